//! Structured secrets: one decrypted document (JSON, YAML, dotenv or INI) holding many values,
//! and the `/`-separated key path (as in sops-nix) that picks one of them. Used by the
//! installer (`format`/`key` in the manifest) and by `ragenix -d --key`. Decryption is not
//! here. Errors name the format and the key but never quote the document: it is a secret.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

/// How a secret's plaintext is read.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The whole file is the secret.
    #[default]
    Binary,
    Json,
    Yaml,
    Dotenv,
    Ini,
}

impl Format {
    pub const NAMES: [&'static str; 5] = ["binary", "json", "yaml", "dotenv", "ini"];

    pub fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Json => "json",
            Format::Yaml => "yaml",
            Format::Dotenv => "dotenv",
            Format::Ini => "ini",
        }
    }

    /// The format a file name suggests (`db.yaml.age`, `app.env`), for `ragenix -d --key`
    /// without `--format`.
    pub fn from_file_name(name: &str) -> Option<Format> {
        let name = name.strip_suffix(".age").unwrap_or(name);
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "env" | "dotenv" => Some(Format::Dotenv),
            "ini" => Some(Format::Ini),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "binary" => Ok(Format::Binary),
            "json" => Ok(Format::Json),
            "yaml" => Ok(Format::Yaml),
            "dotenv" => Ok(Format::Dotenv),
            "ini" => Ok(Format::Ini),
            _ => Err(format!(
                "`{s}` is not a format (one of {})",
                Format::NAMES.join(", ")
            )),
        }
    }
}

/// A key path: `github/oauth_token` is `oauth_token` inside `github`. For dotenv it is one
/// variable name; for INI `section/name` (or `name` outside any section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    text: String,
}

impl Key {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn segments(&self) -> std::str::Split<'_, char> {
        self.text.split('/')
    }

    /// Checks that `self` can name something in `format` (a dotenv variable has no `/`).
    pub fn check_for(&self, format: Format) -> Result<(), String> {
        match format {
            Format::Binary => Err(
                "a key only applies to the formats json, yaml, dotenv and ini, not binary".into(),
            ),
            Format::Dotenv if self.text.contains('/') => Err(format!(
                "key `{}`: a dotenv variable name has no `/`",
                self.text
            )),
            _ => Ok(()),
        }
    }
}

impl FromStr for Key {
    type Err = String;

    fn from_str(s: &str) -> Result<Key, String> {
        if s.is_empty() {
            return Err("the key is empty".into());
        }
        if s.split('/').any(str::is_empty) {
            return Err(format!(
                "key `{s}` has an empty segment (a leading, trailing or doubled `/`)"
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(format!("key {s:?} contains a control character"));
        }
        Ok(Key { text: s.into() })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a value could not be taken from a document. Displayed without any of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractError {
    /// The document is not UTF-8 text.
    NotText,
    /// The document does not parse; `where_` is a position, never a quote.
    Parse { where_: String },
    /// Nothing at the key; `found` is the part of the key that exists (may be empty).
    Missing { found: String },
    /// The key goes through something that is not a map or list (`a/b` with `a` a string).
    NotContainer { at: String },
    /// The key names a null.
    Null,
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtractError::NotText => f.write_str("the document is not UTF-8 text"),
            ExtractError::Parse { where_ } => write!(f, "the document does not parse ({where_})"),
            ExtractError::Missing { found } if found.is_empty() => {
                f.write_str("the key is not in the document")
            }
            ExtractError::Missing { found } => write!(
                f,
                "the key is not in the document (`{found}` is, but nothing below it by that name)"
            ),
            ExtractError::NotContainer { at } => {
                write!(f, "`{at}` holds a single value, not a map or list")
            }
            ExtractError::Null => f.write_str("the key holds null"),
        }
    }
}

impl std::error::Error for ExtractError {}

/// The value at `key` in `document`. Strings come out as their bytes, numbers and booleans as
/// their text, maps and lists as JSON (json) or YAML (yaml).
pub fn extract(
    format: Format,
    document: &[u8],
    key: &Key,
) -> Result<Zeroizing<Vec<u8>>, ExtractError> {
    if format == Format::Binary {
        return Ok(Zeroizing::new(document.to_vec()));
    }
    let text = std::str::from_utf8(document).map_err(|_| ExtractError::NotText)?;
    match format {
        Format::Binary => unreachable!("handled above"),
        Format::Json => json(text, key),
        Format::Yaml => yaml(text, key),
        Format::Dotenv => dotenv(text, key),
        Format::Ini => ini(text, key),
    }
}

/// `key` walked so far, for messages.
fn prefix(key: &Key, n: usize) -> String {
    key.segments().take(n).collect::<Vec<_>>().join("/")
}

fn json(text: &str, key: &Key) -> Result<Zeroizing<Vec<u8>>, ExtractError> {
    use serde_json::Value;
    let doc: Value = serde_json::from_str(text).map_err(|e| ExtractError::Parse {
        where_: format!("line {}, column {}", e.line(), e.column()),
    })?;
    let mut at = &doc;
    for (i, seg) in key.segments().enumerate() {
        let next = match at {
            Value::Object(map) => map.get(seg),
            Value::Array(list) => seg.parse::<usize>().ok().and_then(|n| list.get(n)),
            _ => return Err(ExtractError::NotContainer { at: prefix(key, i) }),
        };
        at = next.ok_or_else(|| ExtractError::Missing {
            found: prefix(key, i),
        })?;
    }
    Ok(Zeroizing::new(match at {
        Value::Null => return Err(ExtractError::Null),
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Bool(b) => b.to_string().into_bytes(),
        Value::Number(n) => n.to_string().into_bytes(),
        v => serde_json::to_vec(v).expect("a JSON value serialises"),
    }))
}

fn yaml(text: &str, key: &Key) -> Result<Zeroizing<Vec<u8>>, ExtractError> {
    use serde_norway::Value;
    let mut doc: Value = serde_norway::from_str(text).map_err(|e| ExtractError::Parse {
        where_: e.location().map_or_else(
            || "not a single YAML document".into(),
            |l| format!("line {}, column {}", l.line(), l.column()),
        ),
    })?;
    // `<<: *anchor` merge keys, as YAML users expect them.
    doc.apply_merge().map_err(|_| ExtractError::Parse {
        where_: "a `<<` merge key that does not name a map".into(),
    })?;
    let mut at = &doc;
    for (i, seg) in key.segments().enumerate() {
        let here = untag(at);
        let next = match here {
            Value::Mapping(map) => map.iter().find(|(k, _)| scalar_text(k) == Some(seg.into())),
            Value::Sequence(list) => seg
                .parse::<usize>()
                .ok()
                .and_then(|n| list.get(n))
                .map(|v| (v, v)),
            _ => return Err(ExtractError::NotContainer { at: prefix(key, i) }),
        };
        at = next
            .ok_or_else(|| ExtractError::Missing {
                found: prefix(key, i),
            })?
            .1;
    }
    let at = untag(at);
    if matches!(at, Value::Null) {
        return Err(ExtractError::Null);
    }
    Ok(Zeroizing::new(match scalar_text(at) {
        Some(s) => s.into_bytes(),
        None => serde_norway::to_string(at)
            .expect("a YAML value serialises")
            .into_bytes(),
    }))
}

fn untag(v: &serde_norway::Value) -> &serde_norway::Value {
    match v {
        serde_norway::Value::Tagged(t) => untag(&t.value),
        v => v,
    }
}

/// A YAML scalar as text (`1`, `true`, `x`), so keys and values that YAML typed still match
/// and print as written.
fn scalar_text(v: &serde_norway::Value) -> Option<String> {
    use serde_norway::Value;
    match untag(v) {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// dotenv in adotenv's portable dialect: `export`, single quotes (literal), double quotes
/// (`\n`, `\t`, `\"`, `\\`, `\$` decoded), `#` comments. Values are taken literally: a
/// password may hold `$`, and what is installed never depends on the environment of the
/// process reading it (root, at boot). A name without `=value` is an error rather than a
/// silent miss.
fn dotenv(text: &str, key: &Key) -> Result<Zeroizing<Vec<u8>>, ExtractError> {
    const DIALECT: adotenv::Dialect =
        adotenv::Dialect::PORTABLE.with_bare_keys(adotenv::BareKeys::Error);
    let mut values = adotenv::parse_values_with(text, DIALECT).map_err(|e| {
        use adotenv::DiagnosticCode as Code;
        // Only the line number and a fixed description: the diagnostic's span points into
        // the secret and is not used.
        let what = match e.code() {
            Code::InvalidKey => "is not NAME=value",
            Code::UnterminatedQuote => "opens a quote that is never closed",
            Code::TrailingText => "has text after the closing quote",
            Code::ForbiddenBareKey => "has a name but no `=value`",
            other => other.message(),
        };
        ExtractError::Parse {
            where_: format!("line {} {what}", e.line()),
        }
    })?;
    // The last assignment wins, as when the file is sourced.
    let found = values
        .remove(key.as_str())
        .map(|v| Zeroizing::new(v.into_bytes()));
    values.values_mut().for_each(zeroize::Zeroize::zeroize);
    found.ok_or(ExtractError::Missing {
        found: String::new(),
    })
}

fn ini(text: &str, key: &Key) -> Result<Zeroizing<Vec<u8>>, ExtractError> {
    // Values are taken literally: a password may hold quotes and backslashes.
    let options = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..ini::ParseOption::default()
    };
    let doc = ini::Ini::load_from_str_opt(text, options).map_err(|e| ExtractError::Parse {
        where_: format!("line {}, column {}: {}", e.line, e.col, e.msg),
    })?;
    let (section, name) = match key.as_str().rsplit_once('/') {
        Some((section, name)) => (Some(section), name),
        None => (None, key.as_str()),
    };
    let props = match section {
        Some(s) => doc.section(Some(s)),
        None => Some(doc.general_section()),
    }
    .ok_or(ExtractError::Missing {
        found: String::new(),
    })?;
    let value = props
        .get_all(name)
        .next_back()
        .map(|v| Zeroizing::new(v.as_bytes().to_vec()))
        .ok_or_else(|| ExtractError::Missing {
            found: section.unwrap_or_default().into(),
        });
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(format: Format, doc: &str, key: &str) -> Result<String, ExtractError> {
        extract(format, doc.as_bytes(), &key.parse().unwrap())
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    }

    const JSON: &str = r#"{"github": {"oauth_token": "gho_x", "n": 3, "ok": true, "none": null,
        "list": ["a", {"b": "c"}]}, "a/b": "slash"}"#;

    #[test]
    fn json_values_are_found_by_path_and_strings_come_out_raw() {
        assert_eq!(
            get(Format::Json, JSON, "github/oauth_token").unwrap(),
            "gho_x"
        );
        assert_eq!(get(Format::Json, JSON, "github/n").unwrap(), "3");
        assert_eq!(get(Format::Json, JSON, "github/ok").unwrap(), "true");
        assert_eq!(get(Format::Json, JSON, "github/list/1/b").unwrap(), "c");
        assert_eq!(
            get(Format::Json, JSON, "github/list").unwrap(),
            r#"["a",{"b":"c"}]"#
        );
    }

    #[test]
    fn json_misses_say_how_far_the_key_got_and_never_quote_the_document() {
        assert_eq!(
            get(Format::Json, JSON, "github/nope").unwrap_err(),
            ExtractError::Missing {
                found: "github".into()
            }
        );
        assert_eq!(
            get(Format::Json, JSON, "github/oauth_token/x").unwrap_err(),
            ExtractError::NotContainer {
                at: "github/oauth_token".into()
            }
        );
        assert_eq!(
            get(Format::Json, JSON, "github/none").unwrap_err(),
            ExtractError::Null
        );
        let err = get(Format::Json, r#"{"pw": "hunter2" "#, "pw").unwrap_err();
        assert!(matches!(err, ExtractError::Parse { .. }));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    const YAML: &str = "\
base: &base
  user: app
db:
  <<: *base
  password: 'p@ss: word'
  port: 5432
  on: yes
1: one
tagged: !secret s3
multi: |
  line1
  line2
";

    #[test]
    fn yaml_values_are_found_by_path_with_merge_keys_tags_and_typed_keys() {
        assert_eq!(
            get(Format::Yaml, YAML, "db/password").unwrap(),
            "p@ss: word"
        );
        assert_eq!(get(Format::Yaml, YAML, "db/user").unwrap(), "app");
        assert_eq!(get(Format::Yaml, YAML, "db/port").unwrap(), "5432");
        assert_eq!(get(Format::Yaml, YAML, "1").unwrap(), "one");
        assert_eq!(get(Format::Yaml, YAML, "tagged").unwrap(), "s3");
        assert_eq!(get(Format::Yaml, YAML, "multi").unwrap(), "line1\nline2\n");
        assert_eq!(get(Format::Yaml, YAML, "base").unwrap(), "user: app\n");
    }

    #[test]
    fn broken_yaml_is_a_parse_error_with_a_position_only() {
        let err = get(Format::Yaml, "a: [hunter2\nb: c\n", "a").unwrap_err();
        assert!(
            matches!(&err, ExtractError::Parse { where_ } if where_.starts_with("line ")),
            "{err:?}"
        );
        assert!(!err.to_string().contains("hunter2"));
        // Duplicate keys are an error, not a silent pick.
        assert!(matches!(
            get(Format::Yaml, "pw: a\npw: b\n", "pw").unwrap_err(),
            ExtractError::Parse { .. }
        ));
    }

    #[test]
    fn dotenv_reads_quotes_export_and_comments_and_the_last_assignment_wins() {
        let doc = "# comment\nTOKEN=abc\nexport QUOTED=\"a b\" # note\nLITERAL='x\\n'\n\
                   ESCAPED=\"l1\\nl2\\t\\\"q\\\" \\\\\"\nHASH=a#b\nEMPTY= # nothing\n\
                   MULTI=\"one\ntwo\"\r\nCRLF=v\r\nTOKEN=def\n";
        assert_eq!(get(Format::Dotenv, doc, "TOKEN").unwrap(), "def");
        assert_eq!(get(Format::Dotenv, doc, "QUOTED").unwrap(), "a b");
        assert_eq!(get(Format::Dotenv, doc, "LITERAL").unwrap(), "x\\n");
        assert_eq!(
            get(Format::Dotenv, doc, "ESCAPED").unwrap(),
            "l1\nl2\t\"q\" \\"
        );
        assert_eq!(get(Format::Dotenv, doc, "HASH").unwrap(), "a#b");
        assert_eq!(get(Format::Dotenv, doc, "EMPTY").unwrap(), "");
        assert_eq!(get(Format::Dotenv, doc, "MULTI").unwrap(), "one\ntwo");
        assert_eq!(get(Format::Dotenv, doc, "CRLF").unwrap(), "v");
        assert_eq!(
            get(Format::Dotenv, doc, "NOPE").unwrap_err(),
            ExtractError::Missing {
                found: String::new()
            }
        );
    }

    #[test]
    fn dotenv_dollar_signs_stay_literal_in_bare_double_and_single_quoted_values() {
        let doc = "DEF=defined\nBARE=abc$DEF\nBRACED=x${DEF}y\nDOUBLE=\"p$DEF ${DEF}\"\n\
                   SINGLE='$DEF${DEF}'\nESCAPED=\"\\$DEF\"\nUNSET=a$NOT_SET_ANYWHERE_42b\n\
                   DEFAULT=${NOPE:-fallback}\nCOMMAND=$(id)\n";
        for (key, want) in [
            ("BARE", "abc$DEF"),
            ("BRACED", "x${DEF}y"),
            ("DOUBLE", "p$DEF ${DEF}"),
            ("SINGLE", "$DEF${DEF}"),
            ("ESCAPED", "$DEF"),
            ("UNSET", "a$NOT_SET_ANYWHERE_42b"),
            ("DEFAULT", "${NOPE:-fallback}"),
            ("COMMAND", "$(id)"),
        ] {
            assert_eq!(get(Format::Dotenv, doc, key).unwrap(), want, "{key}");
        }
    }

    #[test]
    fn dotenv_values_never_take_anything_from_the_reading_process_environment() {
        // Variables every test process has: if the parser read the environment these would
        // come out as their values (and a bare `PATH` line would take the environment's).
        let path = std::env::var("PATH").expect("the test process has PATH");
        assert!(!path.is_empty() && !path.contains("$PATH"));
        let doc = "A=$PATH\nB=\"${PATH}:/x\"\nC=pre$PATH\n";
        assert_eq!(get(Format::Dotenv, doc, "A").unwrap(), "$PATH");
        assert_eq!(get(Format::Dotenv, doc, "B").unwrap(), "${PATH}:/x");
        assert_eq!(get(Format::Dotenv, doc, "C").unwrap(), "pre$PATH");
        assert!(matches!(
            get(Format::Dotenv, "A=1\nPATH\n", "PATH").unwrap_err(),
            ExtractError::Parse { .. }
        ));
        assert_eq!(
            get(Format::Dotenv, "A=1\n", "PATH").unwrap_err(),
            ExtractError::Missing {
                found: String::new()
            }
        );
    }

    #[test]
    fn dotenv_parse_errors_name_the_line_and_never_its_text() {
        for (doc, want) in [
            (
                "A=1\nB=\"hunter2\n",
                "line 2 opens a quote that is never closed",
            ),
            ("A=1\n\nhunter2 x=3\n", "line 3 is not NAME=value"),
            ("# c\nhunter2\n", "line 2 has a name but no `=value`"),
            (
                "A=1\nB=\"x\"hunter2\n",
                "line 2 has text after the closing quote",
            ),
        ] {
            let err = get(Format::Dotenv, doc, "A").unwrap_err();
            assert_eq!(
                err,
                ExtractError::Parse {
                    where_: want.into()
                },
                "{doc:?}"
            );
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn ini_values_are_literal_by_section_and_name() {
        let doc = "top = level\n[db]\npassword = a\\b\"c'\n[a/b]\nk = v\n";
        assert_eq!(get(Format::Ini, doc, "top").unwrap(), "level");
        assert_eq!(get(Format::Ini, doc, "db/password").unwrap(), "a\\b\"c'");
        assert_eq!(get(Format::Ini, doc, "a/b/k").unwrap(), "v");
        assert_eq!(
            get(Format::Ini, doc, "db/user").unwrap_err(),
            ExtractError::Missing { found: "db".into() }
        );
    }

    #[test]
    fn keys_with_empty_segments_and_dotenv_keys_with_slashes_are_refused() {
        for bad in ["", "/a", "a/", "a//b"] {
            assert!(bad.parse::<Key>().is_err(), "{bad:?}");
        }
        let k: Key = "a/b".parse().unwrap();
        assert!(k.check_for(Format::Dotenv).is_err());
        assert!(k.check_for(Format::Binary).is_err());
        assert!(k.check_for(Format::Yaml).is_ok());
    }

    #[test]
    fn a_document_that_is_not_text_is_refused_without_showing_it() {
        assert_eq!(
            extract(Format::Json, b"\xff\xfe", &"a".parse().unwrap()).unwrap_err(),
            ExtractError::NotText
        );
    }

    #[test]
    fn the_format_is_guessed_from_the_file_name() {
        assert_eq!(Format::from_file_name("x.yaml.age"), Some(Format::Yaml));
        assert_eq!(
            Format::from_file_name("dir/app.env.age"),
            Some(Format::Dotenv)
        );
        assert_eq!(Format::from_file_name("x.JSON"), Some(Format::Json));
        assert_eq!(Format::from_file_name("token.age"), None);
    }
}
