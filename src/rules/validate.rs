//! Validation: an evaluated rules value turned into [`Rules`], or an error that names the
//! secret and where its rule is written. Owns what a rule may say (`publicKeys`, `armor`,
//! other attributes kept for their readers) and that its file stays inside the rules root; it
//! does not evaluate Nix (see `eval`) nor interpret `generator` (see `generator`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::sandbox::{Resolver, Sandbox};
use super::value::Strict;
use super::{normalize, Locations, Rules, RulesError, Secret, Wanted};

/// Validates an evaluated rules value; messages point at `locations` where known. Every rule's
/// name is checked (a rules file naming a file outside its root is refused whatever the action
/// is about); with `only`, the rest of a rule (its keys, `armor`) only where it names that
/// file, and the result holds that rule alone.
pub(super) fn validate(
    file: &Path,
    value: &Strict,
    locations: &Locations,
    only: Option<&Wanted>,
) -> Result<Rules, RulesError> {
    let file_shown = file.display().to_string();
    // Secrets are visited in name order, which is the order `locations` records them in.
    let at = |i: usize, rule: &Strict, attr: Option<&str>| -> String {
        let found = attr.and_then(|a| {
            let Strict::Attrs(attrs) = rule else {
                return None;
            };
            let j = attrs.iter().position(|(k, _)| &**k == a)?;
            locations.attr(i, j)
        });
        found
            .or_else(|| locations.secret(i))
            .unwrap_or_else(|| file_shown.clone())
    };
    let shown = file.display();
    let dir = rules_dir(file)?;
    let root = Sandbox::confined_to_rules_of(&dir.join("secrets.nix"))
        .map_err(|e| RulesError::new(format!("{shown}: cannot find the rules root: {e}")))?;
    let Strict::Attrs(top) = value else {
        return Err(RulesError::new(format!(
            "{shown}: the rules file must evaluate to an attribute set of secrets, not {}",
            value.json_type()
        )));
    };
    let mut resolver = root.resolver();
    let mut secrets = Vec::with_capacity(top.len());
    let mut warnings = Vec::new();
    let mut names: Vec<&(std::rc::Rc<str>, Strict)> = top.iter().collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    // Names that are not already in normal form (`./a.age`, `a//b.age`), by their normal form:
    // only these can name the same file as another rule.
    let mut unusual: HashMap<PathBuf, (usize, &str)> = HashMap::new();
    for (i, &(name, rule)) in names.iter().enumerate() {
        // Names are printed in messages and `--check` findings: a newline would start a line
        // of the rules author's choosing in a CI log (where `::error::` is a command), an
        // escape sequence would rewrite the terminal. Shown escaped, never raw.
        if name.chars().any(char::is_control) {
            return Err(RulesError::new(format!(
                "{}: secret {:?}: the file name contains a control character; name files \
                 with printable characters only",
                at(i, rule, None),
                &**name
            )));
        }
        let path = normalize(Path::new(&**name));
        if let Some(why) = escapes(&root, &mut resolver, &dir, &path) {
            return Err(RulesError::new(format!(
                "{}: secret \"{name}\": {why}",
                at(i, rule, None)
            )));
        }
        if path.as_os_str() != &**name {
            // Two rules for one file would leave which keys it gets to the order of actions
            // (`-r` would encrypt it twice, the last rule winning); a rules file from someone
            // else could hide a second rule for a file this way.
            let same = path
                .to_str()
                .and_then(|normal| names.binary_search_by(|(n, _)| (**n).cmp(normal)).ok())
                .map(|j| (j, &*names[j].0))
                .or_else(|| unusual.get(&path).copied());
            // Blamed on this name, the one not in normal form.
            if let Some((j, other)) = same {
                return Err(RulesError::new(format!(
                    "{}: secret \"{name}\" names the same file as secret \"{other}\" ({}); \
                     name each file once",
                    at(i, rule, None),
                    at(j, &names[j].1, None),
                )));
            }
            unusual.insert(path.clone(), (i, name));
        }
        if only.is_some_and(|wanted| !wanted.is(&path)) {
            continue;
        }
        let Strict::Attrs(attrs) = rule else {
            return Err(RulesError::new(format!(
                "{}: secret \"{name}\" must be an attribute set, not {}",
                at(i, rule, None),
                rule.json_type()
            )));
        };
        let keys = rule.get("publicKeys").ok_or_else(|| {
            RulesError::new(format!(
                "{}: secret \"{name}\" has no publicKeys attribute",
                at(i, rule, None)
            ))
        })?;
        let mut flat = Vec::new();
        let nested = flatten_keys(keys, &mut flat).map_err(|what| {
            RulesError::new(format!(
                "{}: secret \"{name}\": publicKeys must be a list of strings, found {what}",
                at(i, rule, Some("publicKeys"))
            ))
        })?;
        if nested {
            warnings.push(format!(
                "{}: secret \"{name}\": publicKeys contains a nested list; it was flattened",
                at(i, rule, Some("publicKeys"))
            ));
        }
        let mut public_keys: Vec<String> = Vec::with_capacity(flat.len());
        for key in flat {
            let key = key.trim();
            if !key.is_empty() && !public_keys.iter().any(|k| k == key) {
                public_keys.push(key.to_owned());
            }
        }
        let armor = match rule.get("armor") {
            None | Some(Strict::Null) => false,
            Some(Strict::Bool(b)) => *b,
            Some(other) => {
                return Err(RulesError::new(format!(
                    "{}: secret \"{name}\": armor must be a boolean, not {}",
                    at(i, rule, Some("armor")),
                    other.json_type()
                )))
            }
        };
        let extra = attrs
            .iter()
            .filter(|(k, _)| &**k != "publicKeys" && &**k != "armor")
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect();
        secrets.push(Secret {
            name: name.to_string(),
            path,
            public_keys,
            armor,
            extra,
        });
    }
    Ok(Rules {
        file: file.to_path_buf(),
        dir,
        secrets,
        warnings,
    })
}

/// Why a secret's file (`path`, normalised, relative to the rules directory `dir`) would not stay
/// inside the rules root, if it would not: an absolute name, `..` past the root, or a symlink
/// (in the repository, under the attacker's control) that leads out of it. Every action writes
/// or reads the file by this path, so such a name is refused before any of them starts.
fn escapes(root: &Sandbox, resolver: &mut Resolver, dir: &Path, path: &Path) -> Option<String> {
    let (_, top) = root.roots()?;
    let outside = || {
        format!(
            "the file name leads outside the rules root {} (the nearest directory above the \
             rules file holding .git, .hg, .jj or .sl); name files inside it",
            top.display()
        )
    };
    if path.as_os_str().is_empty() {
        return Some("the file name is empty or names the rules file's directory itself".into());
    }
    if path.is_absolute() {
        return Some(format!(
            "the file name is absolute; names are relative to the rules file's directory and {}",
            outside().replacen("the file name leads", "may not lead", 1)
        ));
    }
    // `dir` is canonical and `path` normalised: only a leading `..` needs resolving.
    let abs = if path.starts_with("..") {
        normalize(&dir.join(path))
    } else {
        dir.join(path)
    };
    resolver.leads_outside(&abs).then(outside)
}

/// Flattens a `publicKeys` value into `out`; returns whether a nested list was seen, or a
/// description of the first non-string, non-list element.
fn flatten_keys<'a>(value: &'a Strict, out: &mut Vec<&'a str>) -> Result<bool, String> {
    let Strict::List(list) = value else {
        return Err(format!("{} instead of a list", value.json_type()));
    };
    let mut nested = false;
    for item in list {
        match item {
            Strict::Str(s) => out.push(s),
            Strict::List(_) => {
                flatten_keys(item, out)?;
                nested = true;
            }
            other => return Err(format!("an element that is {}", other.json_type())),
        }
    }
    Ok(nested)
}

pub(super) fn rules_dir(file: &Path) -> Result<PathBuf, RulesError> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Canonical so that FILE arguments given through symlinked or relative paths still match.
    parent.canonicalize().map_err(|e| {
        RulesError::new(format!(
            "{}: cannot resolve the rules file's directory: {e}",
            file.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use serde_json::Value as Json;
    use std::path::PathBuf;

    fn load(json: Json) -> Result<Rules, RulesError> {
        Rules::from_json(Path::new("secrets.nix"), &json)
    }

    #[test]
    fn nested_key_lists_are_flattened_with_a_warning_naming_the_secret() {
        let rules = load(json!({"a.age": {"publicKeys": [["k1", "k2"], "k3"]}})).unwrap();
        assert_eq!(rules.secrets[0].public_keys, ["k1", "k2", "k3"]);
        assert_eq!(rules.warnings.len(), 1);
        assert!(
            rules.warnings[0].contains("\"a.age\""),
            "{:?}",
            rules.warnings
        );
    }

    #[test]
    fn keys_are_trimmed_and_deduplicated_in_order() {
        let rules = load(json!({"a.age": {"publicKeys": ["k2\n", " k1", "k2", ""]}})).unwrap();
        assert_eq!(rules.secrets[0].public_keys, ["k2", "k1"]);
        assert!(rules.warnings.is_empty());
    }

    #[test]
    fn empty_public_keys_load() {
        let rules = load(json!({"a.age": {"publicKeys": []}})).unwrap();
        assert!(rules.secrets[0].public_keys.is_empty());
    }

    #[test]
    fn armor_defaults_to_false_and_must_be_a_bool() {
        let rules =
            load(json!({"a.age": {"publicKeys": [], "armor": true}, "b.age": {"publicKeys": []}}))
                .unwrap();
        assert!(rules.secrets[0].armor);
        assert!(!rules.secrets[1].armor);
        let err = load(json!({"a.age": {"publicKeys": [], "armor": "yes"}})).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"a.age\": armor must be a boolean"),
            "{err}"
        );
    }

    #[test]
    fn other_attributes_are_kept() {
        let rules = load(json!({"a.age": {"publicKeys": [], "generator": "hex:32"}})).unwrap();
        assert_eq!(rules.secrets[0].extra["generator"], json!("hex:32"));
    }

    #[test]
    fn a_rule_without_public_keys_is_an_error_naming_it() {
        let err = load(json!({"x/y.age": {"armor": true}})).unwrap_err();
        assert!(
            err.to_string()
                .contains("secret \"x/y.age\" has no publicKeys"),
            "{err}"
        );
    }

    #[test]
    fn non_string_keys_are_an_error() {
        let err = load(json!({"a.age": {"publicKeys": ["k", 3]}})).unwrap_err();
        assert!(err.to_string().contains("a number"), "{err}");
        let err = load(json!({"a.age": {"publicKeys": "k"}})).unwrap_err();
        assert!(
            err.to_string().contains("a string instead of a list"),
            "{err}"
        );
    }

    #[test]
    fn the_top_level_must_be_an_attribute_set_of_attribute_sets() {
        assert!(load(json!([1]))
            .unwrap_err()
            .to_string()
            .contains("not a list"));
        let err = load(json!({"a.age": 1})).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"a.age\" must be an attribute set"),
            "{err}"
        );
    }

    #[test]
    fn secret_paths_are_normalised() {
        let rules = load(json!({"./sub/../x.age": {"publicKeys": []}})).unwrap();
        assert_eq!(rules.secrets[0].path, PathBuf::from("x.age"));
    }

    #[test]
    fn two_rules_naming_one_file_are_refused_naming_both() {
        for (a, b) in [
            ("a.age", "./a.age"),
            ("a.age", "x/../a.age"),
            ("d/a.age", "d//a.age"),
            ("d/a.age", "d/./a.age"),
            // Neither in normal form.
            ("./a.age", "x/../a.age"),
        ] {
            let err = load(json!({ a: {"publicKeys": []}, b: {"publicKeys": ["age1x"]} }))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("\"{b}\" names the same file as secret \"{a}\""))
                    || err.contains(&format!("\"{a}\" names the same file as secret \"{b}\"")),
                "{a} {b}: {err}"
            );
        }
        // Names that only look alike are different files.
        let rules = load(json!({
            "a.age": {"publicKeys": []},
            "./b.age": {"publicKeys": []},
            "A.age": {"publicKeys": []},
            "a.age/": {"publicKeys": []},
        }));
        assert!(rules.is_err_and(|e| e.to_string().contains("\"a.age/\" names the same file")));
        let rules = load(json!({
            "a.age": {"publicKeys": []},
            "./b.age": {"publicKeys": []},
            "A.age": {"publicKeys": []},
            "x/a.age": {"publicKeys": []},
        }))
        .unwrap();
        assert_eq!(rules.secrets.len(), 4);
    }

    #[test]
    fn names_that_leave_the_rules_root_are_refused_naming_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("secrets")).unwrap();
        std::fs::create_dir_all(dir.path().join("other")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("other"), repo.join("secrets/out")).unwrap();
        let file = repo.join("secrets/secrets.nix");
        for name in [
            "../../other/prod.age",
            "/etc/prod.age",
            "out/prod.age",
            "x/../../../y.age",
        ] {
            let err = Rules::from_json(&file, &json!({ name: {"publicKeys": []} })).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("secret \"{name}\": ")), "{msg}");
            assert!(msg.contains("outside the rules root"), "{msg}");
        }
        for name in ["", ".", "sub/.."] {
            let err = Rules::from_json(&file, &json!({ name: {"publicKeys": []} })).unwrap_err();
            assert!(
                err.to_string().contains("names the rules file's directory"),
                "{err}"
            );
        }
        // Inside the repository, above the rules file, is fine.
        let rules = Rules::from_json(&file, &json!({"../top.age": {"publicKeys": []}})).unwrap();
        assert_eq!(rules.secrets[0].path, PathBuf::from("../top.age"));
    }
}
