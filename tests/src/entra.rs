//! A client that plays Microsoft Entra ID's provisioning service against a SCIM endpoint, request
//! by request as Microsoft documents it ("Tutorial: Develop and plan provisioning for a SCIM
//! endpoint", "Known issues and resolutions with SCIM 2.0 protocol compliance") and as
//! `../shared/notes/entra-scim.md` records it: match by a filter, then POST or PATCH; only
//! changed attributes; the two PATCH dialects.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

/// Entra's two PATCH dialects. Both reach the same endpoint, even from one tenant: the Tenant
/// URL flag selects `Compliant`, provisioning on demand always uses `Legacy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// No `aadOptscim062020`: capitalised ops, `"True"`/`"False"` strings, one op per path,
    /// member removal as `Remove` with a value list.
    Legacy,
    /// `aadOptscim062020`: lowercase ops, JSON booleans, path-less `replace` with dotted and URN
    /// keys, member removal by a `members[value eq "..."]` path.
    Compliant,
}

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Entra adds this non-SCIM group schema to group POSTs.
const ADSCIM_GROUP_SCHEMA: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";
/// The enterprise extension URN.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// An Entra user as the default attribute mappings present it.
#[derive(Clone, Debug, Default)]
pub struct EntraUser {
    /// objectId, mapped to externalId (the matching attribute).
    pub object_id: String,
    /// userPrincipalName -> userName.
    pub upn: String,
    pub given_name: String,
    pub surname: String,
    pub display_name: String,
    pub job_title: Option<String>,
    /// mail -> emails[type eq "work"].value
    pub mail: Option<String>,
    /// mobile -> phoneNumbers[type eq "mobile"].value
    pub mobile: Option<String>,
    /// employeeId -> enterprise employeeNumber
    pub employee_id: Option<String>,
    /// department -> enterprise department
    pub department: Option<String>,
    /// A custom extension attribute (`urn:...:CustomExtension:2.0:User:division`).
    pub division: Option<String>,
    /// Manager's objectId; resolved to the manager's SCIM id.
    pub manager_object_id: Option<String>,
}

impl EntraUser {
    /// Test user number `n` of the contoso tenant: its objectId, UPN, names and mail derive
    /// from `n` (so tests can name a member by number), every other attribute is unset.
    pub fn numbered(n: usize) -> EntraUser {
        EntraUser {
            object_id: format!("{n:08x}-0000-4000-8000-{n:012x}"),
            upn: format!("User.{n}@contoso.onmicrosoft.com"),
            given_name: format!("Given{n}"),
            surname: format!("Sur{n}"),
            display_name: format!("User {n}"),
            mail: Some(format!("user.{n}@contoso.example")),
            ..Default::default()
        }
    }
}

/// How often one request is sent again after a 503 or 429 with `Retry-After`. Entra retries such
/// a refusal (an "escrow") in a later cycle rather than dropping the change; the emulation
/// retries at once after the wait, a few times, so a server that sheds load under a busy
/// machine is not mistaken for one that fails.
const RETRIES_OF_A_REFUSAL: usize = 4;

/// The wait a 503 or 429 asks for (`Retry-After` in seconds, at most 5 s here), or `None` for
/// any other answer.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    if !matches!(response.status().as_u16(), 429 | 503) {
        return None;
    }
    let secs: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(5)))
}

/// One HTTP exchange, for assertions on what the server answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
}

impl Answer {
    /// Reads a response: its status, content type and JSON body (`null` when empty).
    pub async fn read(response: reqwest::Response) -> anyhow::Result<Answer> {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{status} answer is not JSON: {text}"))?
        };
        Ok(Answer {
            status,
            body,
            content_type,
        })
    }
}

/// Entra's provisioning client for one Tenant URL and token.
pub struct EntraClient {
    http: reqwest::Client,
    base: String,
    token: String,
    pub dialect: Dialect,
}

/// Entra's HTTP client: plain, with a generous timeout.
pub fn default_http() -> reqwest::Client {
    crate::http_builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// The custom extension URN the tests map `division` to (Entra: "customappsso" attribute list).
pub const CUSTOM_EXTENSION: &str =
    "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User";

impl EntraClient {
    /// `base` is the Tenant URL without query string.
    pub fn new(base: &str, token: &str, dialect: Dialect) -> Self {
        Self::with_http(base, token, dialect, default_http())
    }

    /// A client that sends through `http` (e.g. one that resolves the Tenant URL's host to a
    /// route controller on 127.0.0.1 and trusts the test's CA).
    pub fn with_http(base: &str, token: &str, dialect: Dialect, http: reqwest::Client) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            dialect,
        }
    }

    /// The same tenant in the other dialect (provisioning on demand on a flagged tenant).
    pub fn with_dialect(&self, dialect: Dialect) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            token: self.token.clone(),
            dialect,
        }
    }

    fn url(&self, path: &str) -> String {
        let flag = match self.dialect {
            Dialect::Compliant => "aadOptscim062020",
            Dialect::Legacy => "",
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        if flag.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}{sep}{flag}", self.base)
        }
    }

    /// Sends one request as Entra does (bearer token, `application/scim+json`, no User-Agent).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .header("Accept", "application/scim+json");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/scim+json; charset=utf-8")
                .body(body.to_string());
        }
        let mut retried = 0;
        loop {
            let attempt = request
                .try_clone()
                .context("a request with a buffered body")?;
            let response = attempt.send().await?;
            let wait = retry_after(&response);
            let answer = Answer::read(response).await?;
            match wait {
                Some(wait) if retried < RETRIES_OF_A_REFUSAL => {
                    // Visible in a failing test's output: a refusal is the server's answer to
                    // overload, and how often it came matters.
                    eprintln!(
                        "entra: {} {path} answered {} {}; retrying in {wait:?}",
                        self.base, answer.status, answer.body
                    );
                    retried += 1;
                    tokio::time::sleep(wait).await;
                }
                _ => return Ok(answer),
            }
        }
    }

    fn expect(answer: Answer, statuses: &[u16], what: &str) -> anyhow::Result<Answer> {
        if !statuses.contains(&answer.status) {
            bail!(
                "{what}: expected {statuses:?}, got {} {}",
                answer.status,
                answer.body
            );
        }
        Ok(answer)
    }

    /// GET with a filter; returns the ListResponse resources.
    pub async fn filter(
        &self,
        resource: &str,
        filter: &str,
        extra: &str,
    ) -> anyhow::Result<Vec<Value>> {
        let path = format!("/{resource}?filter={}{extra}", urlencode(filter));
        let answer = Self::expect(
            self.send(reqwest::Method::GET, &path, None).await?,
            &[200],
            &path,
        )?;
        Ok(answer.body["Resources"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Test Connection: a filter for a user that cannot exist.
    pub async fn test_connection(&self) -> anyhow::Result<Answer> {
        let guid = format!("{:032x}", rand_u128());
        self.send(
            reqwest::Method::GET,
            &format!(
                "/Users?filter={}",
                urlencode(&format!("userName eq \"{guid}\""))
            ),
            None,
        )
        .await
    }

    /// Matches by externalId (objectId), then POSTs or PATCHes; then the manager PATCH, as
    /// Entra sends it separately after a create. Returns the SCIM id.
    pub async fn provision_user(
        &self,
        user: &EntraUser,
        manager_id: Option<&str>,
    ) -> anyhow::Result<String> {
        let found = self
            .filter(
                "Users",
                &format!("externalId eq \"{}\"", user.object_id),
                "",
            )
            .await?;
        let id = match found.first() {
            Some(existing) => existing["id"]
                .as_str()
                .context("user without id")?
                .to_string(),
            None => {
                let answer = Self::expect(
                    self.send(reqwest::Method::POST, "/Users", Some(user_body(user)))
                        .await?,
                    &[201],
                    "POST /Users",
                )?;
                answer.body["id"]
                    .as_str()
                    .context("201 without id")?
                    .to_string()
            }
        };
        if let Some(manager) = manager_id {
            self.set_manager(&id, manager).await?;
        }
        Ok(id)
    }

    /// PATCH manager the way Entra does: legacy sends the bare `manager` path with an array of
    /// `$ref`/`value`, compliant the enterprise URN path with a plain value.
    pub async fn set_manager(&self, id: &str, manager_id: &str) -> anyhow::Result<()> {
        let op = match self.dialect {
            Dialect::Legacy => json!({
                "op": "Add",
                "path": "manager",
                "value": [{"$ref": null, "value": manager_id}]
            }),
            Dialect::Compliant => json!({
                "op": "add",
                "path": format!("{ENTERPRISE}:manager"),
                "value": manager_id
            }),
        };
        self.patch_user(id, vec![op]).await.map(|_| ())
    }

    /// Changes attributes as the dialect does: legacy one `Replace` per path, compliant one
    /// path-less `replace` whose keys are paths.
    pub async fn update_user(&self, id: &str, changes: &[(&str, Value)]) -> anyhow::Result<Answer> {
        let ops = match self.dialect {
            Dialect::Legacy => changes
                .iter()
                .map(|(path, value)| json!({"op": "Replace", "path": path, "value": legacy_value(value)}))
                .collect(),
            Dialect::Compliant => {
                let mut value = Map::new();
                for (path, v) in changes {
                    value.insert(path.to_string(), v.clone());
                }
                vec![json!({"op": "replace", "value": value})]
            }
        };
        self.patch_user(id, ops).await
    }

    /// Deprovisioning (unassign, disable, soft delete): `active` false.
    pub async fn set_active(&self, id: &str, active: bool) -> anyhow::Result<Answer> {
        let op = match self.dialect {
            Dialect::Legacy => {
                json!({"op": "Replace", "path": "active", "value": if active { "True" } else { "False" }})
            }
            Dialect::Compliant => json!({"op": "replace", "path": "active", "value": active}),
        };
        self.patch_user(id, vec![op]).await
    }

    /// A user PATCH (200 or 204 accepted, as Entra does).
    pub async fn patch_user(&self, id: &str, operations: Vec<Value>) -> anyhow::Result<Answer> {
        let body = json!({"schemas": [PATCH_OP], "Operations": operations});
        let path = format!("/Users/{id}");
        Self::expect(
            self.send(reqwest::Method::PATCH, &path, Some(body)).await?,
            &[200, 204],
            &path,
        )
    }

    /// Hard delete (30 days after soft delete, or purge).
    pub async fn delete(&self, resource: &str, id: &str) -> anyhow::Result<()> {
        let path = format!("/{resource}/{id}");
        Self::expect(
            self.send(reqwest::Method::DELETE, &path, None).await?,
            &[204],
            &path,
        )
        .map(|_| ())
    }

    /// Matches a group by displayName (members excluded), then POSTs it with no members.
    pub async fn provision_group(
        &self,
        display_name: &str,
        object_id: &str,
    ) -> anyhow::Result<String> {
        let found = self
            .filter(
                "Groups",
                &format!("displayName eq \"{display_name}\""),
                "&excludedAttributes=members",
            )
            .await?;
        if let Some(existing) = found.first() {
            return Ok(existing["id"]
                .as_str()
                .context("group without id")?
                .to_string());
        }
        let body = json!({
            "schemas": [GROUP_SCHEMA, ADSCIM_GROUP_SCHEMA],
            "externalId": object_id,
            "displayName": display_name,
            "members": []
        });
        let answer = Self::expect(
            self.send(reqwest::Method::POST, "/Groups", Some(body))
                .await?,
            &[201],
            "POST /Groups",
        )?;
        Ok(answer.body["id"]
            .as_str()
            .context("201 without id")?
            .to_string())
    }

    /// Adds members in one PATCH (Entra batches them).
    pub async fn add_members(&self, group_id: &str, member_ids: &[String]) -> anyhow::Result<()> {
        let op = if self.dialect == Dialect::Legacy {
            "Add"
        } else {
            "add"
        };
        let members: Vec<Value> = member_ids.iter().map(|id| json!({"value": id})).collect();
        self.patch_group(
            group_id,
            vec![json!({"op": op, "path": "members", "value": members})],
        )
        .await
    }

    /// Removes members the way the dialect does.
    pub async fn remove_members(
        &self,
        group_id: &str,
        member_ids: &[String],
    ) -> anyhow::Result<()> {
        let ops = match self.dialect {
            Dialect::Legacy => vec![json!({
                "op": "Remove",
                "path": "members",
                "value": member_ids.iter().map(|id| json!({"value": id})).collect::<Vec<_>>()
            })],
            Dialect::Compliant => member_ids
                .iter()
                .map(|id| json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")}))
                .collect(),
        };
        self.patch_group(group_id, ops).await
    }

    /// Renames a group.
    pub async fn rename_group(&self, group_id: &str, display_name: &str) -> anyhow::Result<()> {
        let op = match self.dialect {
            Dialect::Legacy => {
                json!({"op": "Replace", "path": "displayName", "value": display_name})
            }
            Dialect::Compliant => json!({"op": "replace", "value": {"displayName": display_name}}),
        };
        self.patch_group(group_id, vec![op]).await
    }

    /// A group PATCH; Entra expects 204 (200 is accepted too).
    pub async fn patch_group(&self, group_id: &str, operations: Vec<Value>) -> anyhow::Result<()> {
        let body = json!({"schemas": [PATCH_OP], "Operations": operations});
        let path = format!("/Groups/{group_id}");
        Self::expect(
            self.send(reqwest::Method::PATCH, &path, Some(body)).await?,
            &[200, 204],
            &path,
        )
        .map(|_| ())
    }
}

/// The POST body Entra sends for a new user with the default mappings, including the quirks it
/// is known for: the enterprise URN listed, the custom extension URN not listed, `null`s.
pub fn user_body(user: &EntraUser) -> Value {
    let mut body = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": user.object_id,
        "userName": user.upn,
        "active": true,
        "displayName": user.display_name,
        "name": {"givenName": user.given_name, "familyName": user.surname, "formatted": null},
        "title": user.job_title,
        "meta": {"resourceType": "User"},
        "locale": null
    });
    if let Some(mail) = &user.mail {
        body["emails"] = json!([{"primary": true, "type": "work", "value": mail}]);
    }
    if let Some(mobile) = &user.mobile {
        body["phoneNumbers"] = json!([{"type": "mobile", "value": mobile}]);
    }
    let mut enterprise = Map::new();
    if let Some(e) = &user.employee_id {
        enterprise.insert("employeeNumber".into(), json!(e));
    }
    if let Some(d) = &user.department {
        enterprise.insert("department".into(), json!(d));
    }
    if !enterprise.is_empty() {
        body[ENTERPRISE] = Value::Object(enterprise);
    }
    if let Some(division) = &user.division {
        body[CUSTOM_EXTENSION] = json!({"division": division});
    }
    body
}

/// Asserts that the SCIM endpoint at `base` answers `token` with 401 and RFC 6750's
/// `invalid_token` Bearer challenge, which tells Entra to fetch a new token rather than retry.
/// `case` names the token in the failure message.
pub async fn assert_invalid_token(base: &str, token: &str, case: &str) {
    let resp = crate::http_client()
        .get(format!("{base}/Users?filter=userName%20eq%20%22x%22"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401, "{case}: {token}");
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
        "{case}: {challenge}"
    );
}

/// How Entra's OAuth 2.0 client credentials flow (gallery applications: *Client ID*, *Client
/// Secret*, *Token endpoint*) presents the client's credentials to the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic` (`client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// Asks `token_endpoint` for an access token with the client credentials grant (RFC 6749
/// §4.4), as Entra does before a provisioning cycle; `grant_type` is `client_credentials` unless
/// a test wants another. The answer's `access_token` goes into [`EntraClient::new`].
pub async fn client_credentials_token(
    token_endpoint: &str,
    client_id: &str,
    client_secret: &str,
    how: ClientAuth,
    grant_type: &str,
) -> anyhow::Result<Answer> {
    let mut form = vec![("grant_type", grant_type)];
    let mut request = default_http().post(token_endpoint);
    match how {
        ClientAuth::Basic => {
            // RFC 6749 §2.3.1: each part form-encoded before Base64.
            request = request.basic_auth(urlencode(client_id), Some(urlencode(client_secret)));
        }
        ClientAuth::Post => {
            form.push(("client_id", client_id));
            form.push(("client_secret", client_secret));
        }
    }
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    let response = request
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .body(body.join("&"))
        .send()
        .await?;
    Answer::read(response).await
}

/// Exchanges a workload identity federation assertion at `token_endpoint` as Microsoft's
/// gallery validation does (`Federated_Identity_Test`): client credentials grant, the assertion
/// as an RFC 7523 client assertion, `client_id` if given, and its extra `baseAddress`.
pub async fn client_assertion_token(
    token_endpoint: &str,
    client_id: Option<&str>,
    assertion: &str,
    grant_type: &str,
) -> anyhow::Result<Answer> {
    let mut form = vec![("grant_type", grant_type)];
    if let Some(id) = client_id {
        form.push(("client_id", id));
    }
    form.push(("client_assertion", assertion));
    form.push((
        "client_assertion_type",
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    ));
    form.push(("baseAddress", token_endpoint));
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    let response = default_http()
        .post(token_endpoint)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await?;
    Answer::read(response).await
}

/// Legacy Entra sends booleans as capitalised strings.
fn legacy_value(value: &Value) -> Value {
    match value {
        Value::Bool(true) => json!("True"),
        Value::Bool(false) => json!("False"),
        other => other.clone(),
    }
}

/// Percent-encodes a filter for a query string.
pub fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn rand_u128() -> u128 {
    use std::hash::BuildHasher;
    let s = std::collections::hash_map::RandomState::new();
    ((s.hash_one(1u8) as u128) << 64) | s.hash_one(2u8) as u128
}
