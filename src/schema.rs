//! `--schema`: the JSON Schema (draft 2020-12) of an evaluated rules file, for editors and CI.
//!
//! It describes what [`crate::rules::Rules::from_json`] and
//! [`crate::rules::Generator::from_json`] accept together; tests keep the three in step.

use serde_json::{json, Value as Json};

use crate::rules::MAX_LEN;

/// The JSON Schema of the rules format (the value `secrets.nix` evaluates to).
pub fn rules_schema() -> Json {
    // 1..=MAX_LEN in plain digits, as the generator parser accepts.
    let digits = MAX_LEN.to_string().len();
    let length = format!("[1-9][0-9]{{0,{}}}", digits - 1);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ragenix rules",
        "description": "What secrets.nix evaluates to: for each secret file (relative to the rules file's directory), who may decrypt it and how it is written.",
        "type": "object",
        "propertyNames": {
            "description": "The secret's file, relative to the rules file's directory; it must stay inside the repository holding the rules file (neither empty, nor the directory itself, nor absolute, nor leading out through .. or a symlink, which a schema cannot see).",
            "minLength": 1,
            "not": { "pattern": "^(/|(\\./)*\\.?/*$)" }
        },
        "additionalProperties": { "$ref": "#/$defs/secret" },
        "$defs": {
            "secret": {
                "type": "object",
                "required": ["publicKeys"],
                "properties": {
                    "publicKeys": { "$ref": "#/$defs/publicKeys" },
                    "armor": {
                        "description": "Write the file ASCII-armored (default false).",
                        "type": ["boolean", "null"]
                    },
                    "generator": { "$ref": "#/$defs/generator" }
                },
                "additionalProperties": true
            },
            "publicKeys": {
                "description": "Recipients: age X25519 (age1…), age plugin (age1NAME1…), ssh-ed25519 or ssh-rsa public keys. Nested lists are flattened.",
                "type": "array",
                "items": {
                    "anyOf": [
                        { "type": "string" },
                        { "$ref": "#/$defs/publicKeys" }
                    ]
                }
            },
            "generator": {
                "description": "How `ragenix --generate` creates the secret.",
                "oneOf": [
                    {
                        "description": "alnum:N (N characters), hex:N / base64:N (N random bytes), passphrase:N (N words), or ssh-ed25519 (the public key is written beside the secret as NAME.pub).",
                        "type": "string",
                        "pattern": format!("^((alnum|hex|base64|passphrase):{length}|ssh-ed25519)$")
                    },
                    {
                        "description": "Run a program without a shell; its stdout is the secret.",
                        "type": "object",
                        "required": ["command"],
                        "properties": {
                            "command": {
                                "type": "array",
                                "minItems": 1,
                                "items": { "type": "string" }
                            }
                        },
                        "additionalProperties": false
                    },
                    {
                        "description": "Feed a script to an interpreter (default sh) on stdin; its stdout is the secret.",
                        "type": "object",
                        "required": ["script"],
                        "properties": {
                            "script": { "type": "string" },
                            "interpreter": { "type": ["string", "null"], "pattern": "\\S" }
                        },
                        "additionalProperties": false
                    }
                ]
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Generator;
    use crate::rules::Rules;
    use std::path::Path;

    fn compile() -> (boon::Schemas, boon::SchemaIndex) {
        let mut compiler = boon::Compiler::new();
        // Checks the schema against the 2020-12 meta-schema, which boon ships.
        compiler
            .add_resource("ragenix-rules.json", rules_schema())
            .unwrap();
        let mut schemas = boon::Schemas::new();
        let index = compiler
            .compile("ragenix-rules.json", &mut schemas)
            .unwrap_or_else(|e| panic!("the schema is not valid JSON Schema: {e:#}"));
        (schemas, index)
    }

    /// What ragenix itself accepts: the rules validation plus every generator parsing.
    fn ragenix_accepts(value: &Json) -> bool {
        match Rules::from_json(Path::new("secrets.nix"), value) {
            Ok(rules) => rules.secrets.iter().all(|s| Generator::of(s).is_ok()),
            Err(_) => false,
        }
    }

    #[test]
    fn the_schema_is_valid_json_schema() {
        compile();
    }

    #[test]
    fn schema_and_validation_agree() {
        let (schemas, index) = compile();
        let valid = [
            json!({}),
            json!({"a.age": {"publicKeys": []}}),
            json!({"a.age": {"publicKeys": ["age1x", ["ssh-ed25519 K", ["k"]]], "armor": true}}),
            json!({"a.age": {"publicKeys": [], "armor": null, "identityPaths": ["/x"]}}),
            json!({"a.age": {"publicKeys": [], "generator": "alnum:1"}}),
            json!({"a.age": {"publicKeys": [], "generator": "hex:9999"}}),
            json!({"a.age": {"publicKeys": [], "generator": "passphrase:6"}}),
            json!({"a.age": {"publicKeys": [], "generator": "base64:32"}}),
            json!({"a.age": {"publicKeys": [], "generator": "ssh-ed25519"}}),
            json!({"a.age": {"publicKeys": [], "generator": {"command": ["pass", "show", "db"]}}}),
            json!({"a.age": {"publicKeys": [], "generator": {"script": "echo hi"}}}),
            json!({"a.age": {"publicKeys": [], "generator": {"script": "", "interpreter": "python3"}}}),
            json!({"a.age": {"publicKeys": [], "generator": {"script": "x", "interpreter": null}}}),
        ];
        let invalid = [
            json!([]),
            json!("x"),
            json!({"a.age": 1}),
            json!({"a.age": {}}),
            json!({"a.age": {"armor": true}}),
            json!({"a.age": {"publicKeys": "k"}}),
            json!({"a.age": {"publicKeys": [1]}}),
            json!({"a.age": {"publicKeys": [["k", null]]}}),
            json!({"a.age": {"publicKeys": [], "armor": "yes"}}),
            json!({"a.age": {"publicKeys": [], "generator": "hex"}}),
            json!({"a.age": {"publicKeys": [], "generator": "hex:0"}}),
            json!({"a.age": {"publicKeys": [], "generator": "hex:10000"}}),
            json!({"a.age": {"publicKeys": [], "generator": "hex:032x"}}),
            json!({"a.age": {"publicKeys": [], "generator": "uuid:4"}}),
            json!({"a.age": {"publicKeys": [], "generator": "ssh-rsa"}}),
            json!({"a.age": {"publicKeys": [], "generator": 32}}),
            json!({"a.age": {"publicKeys": [], "generator": {"command": []}}}),
            json!({"a.age": {"publicKeys": [], "generator": {"command": "pass"}}}),
            json!({"a.age": {"publicKeys": [], "generator": {"command": ["a"], "script": "b"}}}),
            json!({"a.age": {"publicKeys": [], "generator": {"command": ["a"], "interpreter": "sh"}}}),
            json!({"a.age": {"publicKeys": [], "generator": {"script": "x", "interpreter": ""}}}),
            json!({"a.age": {"publicKeys": [], "generator": {"script": "x", "interpreter": "  "}}}),
            json!({"a.age": {"publicKeys": [], "generator": {"scirpt": "x"}}}),
            json!({"a.age": {"publicKeys": [], "generator": {}}}),
            json!({"/etc/a.age": {"publicKeys": []}}),
            json!({"": {"publicKeys": []}}),
            json!({".": {"publicKeys": []}}),
            json!({"./": {"publicKeys": []}}),
        ];
        for value in &valid {
            assert!(
                schemas.validate(value, index).is_ok(),
                "schema rejects {value}"
            );
            assert!(ragenix_accepts(value), "ragenix rejects {value}");
        }
        for value in &invalid {
            assert!(
                schemas.validate(value, index).is_err(),
                "schema accepts {value}"
            );
            assert!(!ragenix_accepts(value), "ragenix accepts {value}");
        }
    }
}
