//! Templates: text with `<RAGENIX:PLACEHOLDER:name>` markers that the installer replaces by the
//! plaintext of secret `name`. Only the scanning and substitution live here; writing the
//! rendered file is the installer's job like for any secret.

use std::collections::{BTreeMap, BTreeSet};

/// Prefix of the string `age.placeholder.<name>` yields; a template holds
/// `<RAGENIX:PLACEHOLDER:name>` where the secret's plaintext goes.
pub const PLACEHOLDER_PREFIX: &str = "<RAGENIX:PLACEHOLDER:";
pub const PLACEHOLDER_SUFFIX: &str = ">";

/// One placeholder occurrence: byte range in the content and the secret it names.
struct Marker<'a> {
    start: usize,
    end: usize,
    name: &'a str,
}

/// Finds the placeholders in `content`. Names may contain `>`, so the longest declared name
/// followed by the suffix wins; an occurrence matching no declared name yields `Err(text up to
/// the next suffix)`.
fn scan<'a>(content: &'a str, names: &BTreeSet<&str>) -> Vec<Result<Marker<'a>, &'a str>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = content[from..].find(PLACEHOLDER_PREFIX) {
        let start = from + i;
        let rest = &content[start + PLACEHOLDER_PREFIX.len()..];
        let best = names
            .iter()
            .filter(|n| rest.starts_with(**n) && rest[n.len()..].starts_with(PLACEHOLDER_SUFFIX))
            .max_by_key(|n| n.len());
        match best {
            Some(n) => {
                let end = start + PLACEHOLDER_PREFIX.len() + n.len() + PLACEHOLDER_SUFFIX.len();
                found.push(Ok(Marker {
                    start,
                    end,
                    name: &rest[..n.len()],
                }));
                from = end;
            }
            None => {
                let unknown = rest.split(PLACEHOLDER_SUFFIX).next().unwrap_or(rest);
                found.push(Err(unknown));
                from = start + PLACEHOLDER_PREFIX.len();
            }
        }
    }
    found
}

/// The secret names `content` refers to, in order; unknown ones as `Err(name)`.
pub fn referenced<'a>(content: &'a str, names: &BTreeSet<&str>) -> Vec<Result<&'a str, &'a str>> {
    scan(content, names)
        .into_iter()
        .map(|m| m.map(|m| m.name))
        .collect()
}

/// Renders `content` with each placeholder replaced by the plaintext in `secrets`. Fails with
/// the name of the first secret that is unknown or was not decrypted.
pub fn render(content: &str, secrets: &BTreeMap<&str, &[u8]>) -> Result<Vec<u8>, String> {
    let names: BTreeSet<&str> = secrets.keys().copied().collect();
    let mut out = Vec::with_capacity(content.len());
    let mut last = 0;
    for marker in scan(content, &names) {
        let marker = marker.map_err(|n| n.to_string())?;
        out.extend_from_slice(&content.as_bytes()[last..marker.start]);
        out.extend_from_slice(secrets[marker.name]);
        last = marker.end;
    }
    out.extend_from_slice(&content.as_bytes()[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_by_secret_bytes() {
        let secrets = BTreeMap::from([("db", &b"hunter2"[..]), ("api", &b"k\n"[..])]);
        let out = render(
            "user=me pass=<RAGENIX:PLACEHOLDER:db> key=<RAGENIX:PLACEHOLDER:api><RAGENIX:PLACEHOLDER:db>",
            &secrets,
        )
        .unwrap();
        assert_eq!(out, b"user=me pass=hunter2 key=k\nhunter2");
    }

    #[test]
    fn the_longest_declared_name_wins_even_with_a_closing_bracket_inside() {
        let secrets = BTreeMap::from([("a", &b"1"[..]), ("a>b", &b"2"[..])]);
        assert_eq!(render("<RAGENIX:PLACEHOLDER:a>b>", &secrets).unwrap(), b"2");
        assert_eq!(
            render("<RAGENIX:PLACEHOLDER:a>c>", &secrets).unwrap(),
            b"1c>"
        );
    }

    #[test]
    fn an_unknown_or_undecrypted_secret_is_an_error_naming_it() {
        let secrets = BTreeMap::from([("a", &b"1"[..])]);
        assert_eq!(
            render("x<RAGENIX:PLACEHOLDER:b>", &secrets).unwrap_err(),
            "b"
        );
    }

    #[test]
    fn text_without_placeholders_is_copied_unchanged() {
        let secrets = BTreeMap::new();
        assert_eq!(
            render("plain <RAGENIX text", &secrets).unwrap(),
            b"plain <RAGENIX text"
        );
    }
}
