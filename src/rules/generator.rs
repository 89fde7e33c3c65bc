//! A rule's `generator` attribute: its grammar and limits, parsed once here for `--generate`
//! (which runs it), `--check` (which reports a bad one) and `--schema` (which describes it).
//! Running a generator is not the rules format's business and lives in `crate::generate`.
//!
//! Lengths: `alnum:N` is N characters; `hex:N` and `base64:N` are N random *bytes* (like
//! `openssl rand -hex N` / `-base64 N`), so `hex:32` is 64 characters; `passphrase:N` is N
//! words from the EFF long wordlist joined by `-`.

use serde_json::Value as Json;

use super::Secret;

/// The largest N a built-in accepts; bigger is a typo, not a secret.
pub const MAX_LEN: usize = 9999;

/// A parsed `generator` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generator {
    /// N characters from `[A-Za-z0-9]`.
    Alnum(usize),
    /// N random bytes, lowercase hex (2N characters).
    Hex(usize),
    /// N random bytes, standard base64 with padding.
    Base64(usize),
    /// N words from the EFF long wordlist, joined by `-`.
    Passphrase(usize),
    /// An OpenSSH ed25519 private key; its public key goes beside the secret.
    SshEd25519,
    /// `{ command = [ program args… ]; }`, run without a shell; stdout is the secret.
    Command(Vec<String>),
    /// `{ script = "…"; interpreter = "python3"; }`: the script is fed to the interpreter
    /// (default `sh`, split like a shell would) on stdin; stdout is the secret.
    Script {
        script: String,
        interpreter: Vec<String>,
    },
}

/// A `generator` value that does not follow the grammar; names the secret and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret \"{name}\": invalid generator {value}: {why}")]
pub struct GeneratorError {
    pub name: String,
    pub value: String,
    pub why: String,
}

impl Generator {
    /// The generator of a rule, if it has one.
    pub fn of(secret: &Secret) -> Result<Option<Generator>, GeneratorError> {
        secret
            .extra
            .get("generator")
            .map(|spec| Generator::from_json(&secret.name, spec))
            .transpose()
    }

    /// Parses a `generator` value; `name` is the secret, for error messages.
    pub fn from_json(name: &str, spec: &Json) -> Result<Generator, GeneratorError> {
        let bad = |why: &str| GeneratorError {
            name: name.to_owned(),
            value: spec.to_string(),
            why: why.to_owned(),
        };
        match spec {
            Json::String(s) => parse_builtin(s).map_err(|why| bad(&why)),
            Json::Object(attrs) => {
                let known = ["command", "script", "interpreter"];
                if let Some(k) = attrs.keys().find(|k| !known.contains(&k.as_str())) {
                    return Err(bad(&format!(
                        "unknown attribute \"{k}\" (expected command, or script and interpreter)"
                    )));
                }
                match (attrs.get("command"), attrs.get("script")) {
                    (Some(command), None) => {
                        if attrs.contains_key("interpreter") {
                            return Err(bad("interpreter goes with script, not command"));
                        }
                        let argv = command
                            .as_array()
                            .and_then(|a| {
                                a.iter()
                                    .map(|v| v.as_str().map(str::to_owned))
                                    .collect::<Option<Vec<_>>>()
                            })
                            .ok_or_else(|| bad("command must be a list of strings"))?;
                        if argv.is_empty() {
                            return Err(bad("command must not be empty"));
                        }
                        Ok(Generator::Command(argv))
                    }
                    (None, Some(script)) => {
                        let script = script
                            .as_str()
                            .ok_or_else(|| bad("script must be a string"))?
                            .to_owned();
                        let interpreter = match attrs.get("interpreter") {
                            None | Some(Json::Null) => vec!["sh".to_owned()],
                            Some(Json::String(i)) => shell_words::split(i)
                                .ok()
                                .filter(|w| !w.is_empty())
                                .ok_or_else(|| bad("interpreter must name a program"))?,
                            Some(_) => return Err(bad("interpreter must be a string")),
                        };
                        Ok(Generator::Script {
                            script,
                            interpreter,
                        })
                    }
                    (Some(_), Some(_)) => Err(bad("give either command or script, not both")),
                    (None, None) => Err(bad("an attribute set needs command or script")),
                }
            }
            _ => Err(bad(
                "expected a string like \"hex:32\" or { command = [ … ]; } or { script = \"…\"; }",
            )),
        }
    }
}

fn parse_builtin(spec: &str) -> Result<Generator, String> {
    if spec == "ssh-ed25519" {
        return Ok(Generator::SshEd25519);
    }
    let (kind, n) = spec.split_once(':').ok_or_else(|| {
        "expected alnum:N, hex:N, base64:N, passphrase:N or ssh-ed25519".to_owned()
    })?;
    let make: fn(usize) -> Generator = match kind {
        "alnum" => Generator::Alnum,
        "hex" => Generator::Hex,
        "base64" => Generator::Base64,
        "passphrase" => Generator::Passphrase,
        _ => return Err(format!("unknown generator \"{kind}\"")),
    };
    // Only plain digits without a leading zero: `+5`, ` 5` or `05` would parse, but the schema
    // promises a plain number.
    let len = if !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()) {
        n.parse::<usize>().ok()
    } else {
        None
    };
    match len {
        Some(len) if (1..=MAX_LEN).contains(&len) => Ok(make(len)),
        _ => Err(format!(
            "the length must be a whole number from 1 to {MAX_LEN}, not \"{n}\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Json) -> Result<Generator, GeneratorError> {
        Generator::from_json("db.age", &v)
    }

    #[test]
    fn builtin_specs_parse_with_their_lengths() {
        assert_eq!(parse(json!("alnum:32")).unwrap(), Generator::Alnum(32));
        assert_eq!(parse(json!("hex:16")).unwrap(), Generator::Hex(16));
        assert_eq!(
            parse(json!("base64:9999")).unwrap(),
            Generator::Base64(9999)
        );
        assert_eq!(
            parse(json!("passphrase:6")).unwrap(),
            Generator::Passphrase(6)
        );
        assert_eq!(parse(json!("ssh-ed25519")).unwrap(), Generator::SshEd25519);
    }

    #[test]
    fn bad_specs_name_the_secret_and_the_value() {
        for (spec, why) in [
            (json!("hex"), "expected alnum:N"),
            (json!("hex:"), "whole number"),
            (json!("hex:0"), "whole number"),
            (json!("hex:10000"), "whole number"),
            (json!("hex:+5"), "whole number"),
            (json!("hex:-1"), "whole number"),
            (json!("hex:032"), "whole number"),
            (json!("uuid:4"), "unknown generator \"uuid\""),
            (json!(32), "expected a string"),
            (json!({"command": []}), "must not be empty"),
            (json!({"command": "pass show db"}), "list of strings"),
            (json!({"command": ["pass", 1]}), "list of strings"),
            (json!({"command": ["a"], "script": "b"}), "not both"),
            (
                json!({"command": ["a"], "interpreter": "sh"}),
                "goes with script",
            ),
            (json!({"script": 1}), "script must be a string"),
            (
                json!({"script": "x", "interpreter": ""}),
                "must name a program",
            ),
            (
                json!({"script": "x", "interpreter": 3}),
                "interpreter must be a string",
            ),
            (json!({"scirpt": "x"}), "unknown attribute \"scirpt\""),
            (json!({}), "needs command or script"),
        ] {
            let err = parse(spec.clone()).unwrap_err().to_string();
            assert!(
                err.starts_with("secret \"db.age\": invalid generator "),
                "{err}"
            );
            assert!(err.contains(&spec.to_string()), "{err}");
            assert!(err.contains(why), "{spec}: {err}");
        }
    }
}
