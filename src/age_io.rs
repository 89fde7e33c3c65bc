//! Age streams: encrypting to a set of recipients (binary or armored) and decrypting either
//! form, both streaming so memory stays constant whatever the secret's size.
//!
//! Knows nothing about files on disk or rules; callers pass readers and writers.

use std::io::{self, BufReader, Read, Write};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::{DecryptError, Decryptor, Encryptor};
use anyhow::{Context, Result};

use crate::error::{Kind, UserError};
use crate::keys::{BoxRecipient, Identities};

/// Encrypts everything from `input` to `recipients` into `output`.
pub fn encrypt(
    recipients: &[BoxRecipient],
    armor: bool,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<()> {
    let encryptor =
        Encryptor::with_recipients(recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient))
            .context("preparing encryption")?;
    let format = if armor {
        Format::AsciiArmor
    } else {
        Format::Binary
    };
    let armored = ArmoredWriter::wrap_output(output, format)?;
    let mut stream = encryptor.wrap_output(armored)?;
    io::copy(input, &mut stream)?;
    stream.finish()?.finish()?;
    Ok(())
}

/// Decrypts an age file (binary or armored) from `input` into `output`.
///
/// Output errors are returned as `io::Error` inside the chain so the caller can recognise a
/// closed pipe.
pub fn decrypt(ids: &Identities, input: &mut dyn Read, output: &mut dyn Write) -> Result<()> {
    let reader = ArmoredReader::new(BufReader::with_capacity(64 * 1024, input));
    let decryptor = Decryptor::new_buffered(reader).map_err(explain)?;
    let mut stream = decryptor.decrypt(ids.iter()).map_err(|e| {
        if matches!(e, DecryptError::NoMatchingKeys) {
            let files: Vec<String> = ids.files.iter().map(|f| f.display().to_string()).collect();
            anyhow::Error::new(
                UserError::with_hint(
                    format!("no identity matched (tried {})", files.join(", ")),
                    "pass the right key with -i, or rekey the file to include your key",
                )
                .kind(Kind::NoIdentity),
            )
        } else if let (DecryptError::KeyDecryptionFailed, Some(why)) = (&e, ids.unlock_error.get())
        {
            // `why` already carries its hint line, if any.
            UserError::new(why.clone()).kind(Kind::NoIdentity).into()
        } else {
            explain(e)
        }
    })?;
    io::copy(&mut stream, output).map_err(|e| {
        // A read error here is a corrupt or truncated file; a write error is the caller's.
        anyhow::Error::new(e)
    })?;
    Ok(())
}

fn explain(e: DecryptError) -> anyhow::Error {
    match e {
        DecryptError::InvalidHeader => anyhow::anyhow!("not an age file (invalid header)"),
        DecryptError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            anyhow::anyhow!("not an age file (truncated header)")
        }
        DecryptError::UnknownFormat => {
            anyhow::anyhow!("unknown age format; a newer age tool may be needed")
        }
        other => anyhow::anyhow!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::x25519;

    fn pair() -> (Identities, Vec<BoxRecipient>) {
        let id = x25519::Identity::generate();
        let r: BoxRecipient = Box::new(id.to_public());
        (
            Identities::new(vec![Box::new(id)], vec!["test-key".into()]),
            vec![r],
        )
    }

    #[test]
    fn binary_and_armored_round_trip_any_bytes() {
        let (ids, rs) = pair();
        let payloads: [&[u8]; 4] = [b"", b"\x00", b"\xff\xfe not utf8 \x80", &[7u8; 200_000]];
        for armor in [false, true] {
            for p in payloads {
                let mut sealed = Vec::new();
                encrypt(&rs, armor, &mut &p[..], &mut sealed).unwrap();
                assert_eq!(sealed.starts_with(b"-----BEGIN AGE"), armor);
                let mut out = Vec::new();
                decrypt(&ids, &mut &sealed[..], &mut out).unwrap();
                assert_eq!(out, p);
            }
        }
    }

    #[test]
    fn a_foreign_file_says_which_identities_were_tried() {
        let (_, rs) = pair();
        let (other, _) = pair();
        let mut sealed = Vec::new();
        encrypt(&rs, false, &mut &b"x"[..], &mut sealed).unwrap();
        let err = decrypt(&other, &mut &sealed[..], &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("no identity matched (tried test-key)"));
    }

    #[test]
    fn garbage_is_not_an_age_file() {
        let (ids, _) = pair();
        let err = decrypt(&ids, &mut &b"hello world\n"[..], &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("not an age file"), "{err:#}");
    }
}
