//! A `publicKeys` entry: which kind of age recipient it is, decided in one place so that
//! encrypting (`crate::keys`) and checking (`crate::check`) can never disagree on what a rule
//! means. Turning a plugin recipient into something that encrypts (finding the plugin program)
//! is not the rules format's business and stays in `crate::keys`.

use std::str::FromStr;

use age::{plugin, ssh, x25519};
use base64::prelude::{Engine, BASE64_STANDARD_NO_PAD};

/// One recipient, parsed.
#[derive(Clone)]
pub enum Recipient {
    /// `age1…`: an X25519 stanza carries no key tag, so files can only be matched by count.
    X25519(x25519::Recipient),
    /// `ssh-ed25519 …` or `ssh-rsa …`: its stanza (`stanza`) names the key by `tag`.
    Ssh {
        recipient: ssh::Recipient,
        stanza: &'static str,
        tag: String,
    },
    /// `age1<plugin>1…`: the plugin picks its own stanza type, so only counts can be compared.
    Plugin(plugin::Recipient),
}

impl Recipient {
    /// Classifies `key` (already trimmed); the error says why it is not a recipient age can
    /// encrypt to, without repeating the key.
    pub fn parse(key: &str) -> Result<Recipient, String> {
        if let Ok(r) = x25519::Recipient::from_str(key) {
            return Ok(Recipient::X25519(r));
        }
        if key.starts_with("ssh-") {
            let recipient = ssh::Recipient::from_str(key).map_err(|e| ssh_error(&e))?;
            let public = ssh_key::PublicKey::from_openssh(key).map_err(|e| e.to_string())?;
            let stanza = match public.algorithm() {
                ssh_key::Algorithm::Ed25519 => "ssh-ed25519",
                ssh_key::Algorithm::Rsa { .. } => "ssh-rsa",
                other => return Err(format!("age cannot encrypt to {other} ssh keys")),
            };
            return Ok(Recipient::Ssh {
                recipient,
                stanza,
                tag: ssh_tag(&public),
            });
        }
        match plugin::Recipient::from_str(key) {
            Ok(r) => Ok(Recipient::Plugin(r)),
            Err(_) if key.starts_with("age1") => {
                Err("not a valid age X25519 or plugin recipient".into())
            }
            Err(_) => Err(
                "not an age (age1…), age plugin or ssh (ssh-ed25519, ssh-rsa) public key".into(),
            ),
        }
    }
}

fn ssh_error(e: &ssh::ParseRecipientKeyError) -> String {
    match e {
        ssh::ParseRecipientKeyError::Ignore => "ignored key type".into(),
        ssh::ParseRecipientKeyError::Invalid(why) => (*why).into(),
        ssh::ParseRecipientKeyError::RsaModulusTooLarge => "RSA modulus too large".into(),
        ssh::ParseRecipientKeyError::RsaModulusTooSmall => {
            "RSA modulus too small (weak key, below 2048 bits)".into()
        }
        ssh::ParseRecipientKeyError::Unsupported(t) => format!("unsupported ssh key type {t}"),
        _ => "not a supported ssh public key".into(),
    }
}

/// age's ssh key tag: the first 4 bytes of SHA-256 over the key's SSH wire encoding, which is
/// exactly what the SHA-256 fingerprint hashes.
fn ssh_tag(public: &ssh_key::PublicKey) -> String {
    let fp = public.fingerprint(ssh_key::HashAlg::Sha256);
    BASE64_STANDARD_NO_PAD.encode(&fp.as_bytes()[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJO1EooC9qN60aRmgQ3QwbS86222xNOXqF2bW5L6Td4W root@default";

    #[test]
    fn each_kind_is_recognised_with_what_check_compares() {
        let x = x25519::Identity::generate().to_public().to_string();
        assert!(matches!(Recipient::parse(&x), Ok(Recipient::X25519(_))));
        match Recipient::parse(ED25519) {
            Ok(Recipient::Ssh { stanza, tag, .. }) => {
                assert_eq!(stanza, "ssh-ed25519");
                assert_eq!(tag.len(), 6, "4 bytes in unpadded base64");
            }
            _ => panic!("ssh-ed25519 not recognised"),
        }
        let plugin = "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t";
        assert!(matches!(Recipient::parse(plugin), Ok(Recipient::Plugin(_))));
    }

    #[test]
    fn what_is_no_recipient_says_why() {
        for (key, why) in [
            ("age1nope", "not a valid age X25519 or plugin recipient"),
            ("hunter2", "not an age (age1…), age plugin or ssh"),
            ("ssh-ed25519 AAAA", "invalid"),
            ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "ssh"),
        ] {
            match Recipient::parse(key) {
                Err(e) => assert!(e.to_lowercase().contains(&why.to_lowercase()), "{key}: {e}"),
                Ok(_) => panic!("{key} accepted"),
            }
        }
    }
}
