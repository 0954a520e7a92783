//! A client that plays Okta's SCIM 2.0 provisioning against a SCIM endpoint, request by request
//! as Okta's public documentation shows it ("Okta and SCIM Version 2.0",
//! https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20, and the app integration
//! wizard guide): paged imports with `startIndex`/`count`, a `userName eq` lookup before every
//! create, profile updates as a GET followed by a PUT of the whole profile, `active` toggled by a
//! path-less PATCH `replace`, and group push by POST, member PATCHes, PUT and DELETE. Written
//! from the documentation only; no code of Okta or of other servers.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::entra::{Answer, default_http, urlencode};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// An Okta user's app profile with the default SCIM 2.0 attribute mappings.
#[derive(Clone, Debug, Default)]
pub struct OktaUser {
    /// Okta user id (`00u...`), sent as externalId.
    pub okta_id: String,
    /// Okta login: the unique identifier field, `userName`.
    pub login: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    /// Okta sends a password on create when the app's "Sync password" is on.
    pub password: Option<String>,
}

/// Okta's provisioning client for one connector base URL and an `Authorization` header value.
pub struct OktaClient {
    http: reqwest::Client,
    base: String,
    authorization: String,
}

impl OktaClient {
    /// `base` is the SCIM connector base URL; `token` goes into the HTTP Header authentication
    /// field as `Bearer <token>`.
    pub fn new(base: &str, token: &str) -> Self {
        Self::with_http(base, token, default_http())
    }

    /// A client that sends through `http`.
    pub fn with_http(base: &str, token: &str, http: reqwest::Client) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            authorization: format!("Bearer {token}"),
        }
    }

    /// Sends one request as Okta does (its User-Agent, `application/scim+json`).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", &self.authorization)
            .header("User-Agent", "Okta SCIM Client 1.0.0")
            .header("Accept", "application/scim+json");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/scim+json; charset=utf-8")
                .body(body.to_string());
        }
        Answer::read(request.send().await?).await
    }

    fn expect(answer: Answer, status: u16, what: &str) -> anyhow::Result<Answer> {
        if answer.status != status {
            bail!(
                "{what}: expected {status}, got {} {}",
                answer.status,
                answer.body
            );
        }
        if !answer.content_type.starts_with("application/scim+json") && status != 204 {
            bail!("{what}: content type {:?}", answer.content_type);
        }
        Ok(answer)
    }

    /// What "Test Connector Configuration" sends: the first two users and the first 100 groups.
    pub async fn test_connector(&self) -> anyhow::Result<(Answer, Answer)> {
        let users = self
            .send(reqwest::Method::GET, "/Users?startIndex=1&count=2", None)
            .await?;
        let groups = self
            .send(reqwest::Method::GET, "/Groups?startIndex=1&count=100", None)
            .await?;
        Ok((users, groups))
    }

    /// Import: pages of `count` from `startIndex=1` until `totalResults` are read. Returns every
    /// resource and the number of requests it took.
    pub async fn import(
        &self,
        resource: &str,
        count: usize,
    ) -> anyhow::Result<(Vec<Value>, usize)> {
        let mut all = Vec::new();
        let mut start = 1;
        let mut requests = 0;
        loop {
            let path = format!("/{resource}?startIndex={start}&count={count}");
            let page = Self::expect(
                self.send(reqwest::Method::GET, &path, None).await?,
                200,
                &path,
            )?;
            requests += 1;
            let total = page.body["totalResults"].as_u64().context("totalResults")? as usize;
            let resources = page.body["Resources"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if page.body["startIndex"].as_u64() != Some(start as u64) {
                bail!(
                    "{path}: startIndex {} in the answer",
                    page.body["startIndex"]
                );
            }
            let got = resources.len();
            all.extend(resources);
            if got == 0 || all.len() >= total {
                return Ok((all, requests));
            }
            start += got;
        }
    }

    /// The lookup Okta makes before creating a user: `userName eq` with paging parameters.
    pub async fn find_user(&self, login: &str) -> anyhow::Result<Option<Value>> {
        let filter = urlencode(&format!("userName eq \"{login}\""));
        let path = format!("/Users?filter={filter}&startIndex=1&count=100");
        let answer = Self::expect(
            self.send(reqwest::Method::GET, &path, None).await?,
            200,
            &path,
        )?;
        let resources = answer.body["Resources"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if resources.len() > 1 {
            bail!("{path}: {} users for one userName", resources.len());
        }
        Ok(resources.into_iter().next())
    }

    /// Assignment: the lookup, then POST if the user does not exist (Okta links an existing
    /// user instead). Returns the SCIM id and whether it was created.
    pub async fn assign_user(&self, user: &OktaUser) -> anyhow::Result<(String, bool)> {
        if let Some(existing) = self.find_user(&user.login).await? {
            let id = existing["id"].as_str().context("user without id")?;
            return Ok((id.to_string(), false));
        }
        let answer = Self::expect(
            self.send(reqwest::Method::POST, "/Users", Some(user_body(user)))
                .await?,
            201,
            "POST /Users",
        )?;
        let id = answer.body["id"].as_str().context("201 without id")?;
        Ok((id.to_string(), true))
    }

    /// Retrieves one user (Okta does this before a profile update).
    pub async fn get(&self, resource: &str, id: &str) -> anyhow::Result<Answer> {
        self.send(reqwest::Method::GET, &format!("/{resource}/{id}"), None)
            .await
    }

    /// Profile update: GET the user, then PUT the profile Okta manages (the attributes it maps,
    /// `active`, an empty `groups`), which is all Okta knows of the user.
    pub async fn update_profile(&self, id: &str, user: &OktaUser) -> anyhow::Result<Answer> {
        let current = Self::expect(self.get("Users", id).await?, 200, "GET before PUT")?;
        let mut body = user_body(user);
        body["id"] = json!(id);
        body["active"] = current.body["active"].clone();
        body["groups"] = json!([]);
        if let Some(meta) = current.body.get("meta") {
            body["meta"] = meta.clone();
        }
        let path = format!("/Users/{id}");
        Self::expect(
            self.send(reqwest::Method::PUT, &path, Some(body)).await?,
            200,
            &path,
        )
    }

    /// Deactivation (unassignment) and reactivation: a path-less `replace` of `active`.
    /// Okta expects 200 with the user.
    pub async fn set_active(&self, id: &str, active: bool) -> anyhow::Result<Answer> {
        let body = json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "value": {"active": active}}]
        });
        let path = format!("/Users/{id}");
        Self::expect(
            self.send(reqwest::Method::PATCH, &path, Some(body)).await?,
            200,
            &path,
        )
    }

    /// Push Groups: a new group, created with the members Okta already knows.
    pub async fn push_group(
        &self,
        display_name: &str,
        members: &[(String, String)],
    ) -> anyhow::Result<Answer> {
        let body = json!({
            "schemas": [GROUP_SCHEMA],
            "displayName": display_name,
            "members": member_values(members)
        });
        Self::expect(
            self.send(reqwest::Method::POST, "/Groups", Some(body))
                .await?,
            201,
            "POST /Groups",
        )
    }

    /// Membership changes: one PATCH with `remove` by a `members[value eq]` path per removed
    /// member and one `add` with the added members and their `display`. Okta expects 200 with
    /// the group.
    pub async fn update_members(
        &self,
        group_id: &str,
        add: &[(String, String)],
        remove: &[String],
    ) -> anyhow::Result<Answer> {
        let mut ops: Vec<Value> = remove
            .iter()
            .map(|id| json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")}))
            .collect();
        if !add.is_empty() {
            ops.push(json!({"op": "add", "path": "members", "value": member_values(add)}));
        }
        self.patch_group(group_id, ops).await
    }

    /// Rename: a path-less `replace` carrying the group's `id` and new `displayName`.
    pub async fn rename_group(&self, group_id: &str, display_name: &str) -> anyhow::Result<Answer> {
        self.patch_group(
            group_id,
            vec![json!({"op": "replace", "value": {"id": group_id, "displayName": display_name}})],
        )
        .await
    }

    /// A group PATCH; Okta expects 200 with the group.
    pub async fn patch_group(
        &self,
        group_id: &str,
        operations: Vec<Value>,
    ) -> anyhow::Result<Answer> {
        let body = json!({"schemas": [PATCH_OP], "Operations": operations});
        let path = format!("/Groups/{group_id}");
        Self::expect(
            self.send(reqwest::Method::PATCH, &path, Some(body)).await?,
            200,
            &path,
        )
    }

    /// A group pushed again in full: PUT with the name and every member.
    pub async fn replace_group(
        &self,
        group_id: &str,
        display_name: &str,
        members: &[(String, String)],
    ) -> anyhow::Result<Answer> {
        let body = json!({
            "schemas": [GROUP_SCHEMA],
            "id": group_id,
            "displayName": display_name,
            "members": member_values(members)
        });
        let path = format!("/Groups/{group_id}");
        Self::expect(
            self.send(reqwest::Method::PUT, &path, Some(body)).await?,
            200,
            &path,
        )
    }

    /// "Delete the group in the app" when a pushed group is unlinked or deleted in Okta.
    pub async fn delete_group(&self, group_id: &str) -> anyhow::Result<()> {
        let path = format!("/Groups/{group_id}");
        Self::expect(
            self.send(reqwest::Method::DELETE, &path, None).await?,
            204,
            &path,
        )
        .map(|_| ())
    }
}

/// `members` as Okta sends them: the SCIM id and the member's Okta login as `display`.
fn member_values(members: &[(String, String)]) -> Vec<Value> {
    members
        .iter()
        .map(|(id, display)| json!({"value": id, "display": display}))
        .collect()
}

/// The POST body Okta sends for a new user with the default SCIM 2.0 mappings: login as
/// userName, name, one primary work email, the Okta id as externalId, `locale`, an empty
/// `groups` and, with password sync, the password.
pub fn user_body(user: &OktaUser) -> Value {
    let mut body = json!({
        "schemas": [USER_SCHEMA],
        "userName": user.login,
        "name": {"givenName": user.first_name, "familyName": user.last_name},
        "emails": [{"primary": true, "value": user.email, "type": "work"}],
        "displayName": format!("{} {}", user.first_name, user.last_name),
        "locale": "en-US",
        "externalId": user.okta_id,
        "groups": [],
        "active": true
    });
    if let Some(password) = &user.password {
        body["password"] = json!(password);
    }
    body
}
