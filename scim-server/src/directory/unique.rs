//! The server-unique attribute (`userName`, a group's `displayName`): one identity per
//! visible name, and held by one resource of a directory at a time.

use scim_protocol::{Resource, ResourceKind, ScimError};

use super::{DirRef, DirectoryService};
use crate::error::Error;
use crate::storage::Storage;

pub(super) fn uniqueness(kind: ResourceKind) -> Error {
    let attr = kind.unique_attr().map_or("name", |a| a.name);
    ScimError::Uniqueness(format!(
        "a {} with this {attr} already exists in this directory",
        kind.name().to_lowercase()
    ))
    .into()
}

/// Characters that do not show: controls, zero-width and other format characters, fillers.
/// Two names that differ only by them look the same to a person.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}')
}

/// Makes the unique attribute (`userName`, a group's `displayName`) one identity per visible
/// name: refuses a blank value and invisible characters, and stores the NFC form, so names
/// that differ only in Unicode normalization are the same name (and collide as such).
pub(super) fn normalize_unique(res: &mut Resource) -> Result<(), Error> {
    let Some(kind) = res.kind().unique_attr() else {
        return Ok(());
    };
    let attr = kind.name;
    let Some(v) = res.unique_value() else {
        return Err(ScimError::InvalidValue(format!("{attr} is required")).into());
    };
    if v.trim().is_empty() {
        return Err(ScimError::InvalidValue(format!("{attr} must not be empty or blank")).into());
    }
    if v.chars().any(invisible) {
        return Err(ScimError::InvalidValue(format!(
            "{attr} must not contain control, zero-width or other invisible characters"
        ))
        .into());
    }
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(v);
    if let std::borrow::Cow::Owned(n) = nfc {
        res.set_unique_value(n);
    }
    Ok(())
}

impl<S: Storage> DirectoryService<S> {
    /// Whether another resource than `except` holds unique `key`.
    pub(super) fn key_taken(
        &self,
        dir: DirRef<'_>,
        kind: ResourceKind,
        key: &str,
        except: Option<&str>,
    ) -> bool {
        self.cache
            .read(dir.ns, dir.name, |d| d.unique_holder(kind, key, except))
            .is_some()
    }
}
