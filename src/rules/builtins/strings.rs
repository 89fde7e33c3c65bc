//! Strings: joining, cutting, replacing, hashing, and regular expressions (the POSIX/Rust
//! common subset; anything else is left to Nix).

use std::rc::Rc;

use super::super::diag::{EvalError, Pos};
use super::super::eval::Evaluator;
use super::super::value::{ThunkId, Value};
use super::coerce;

pub(super) fn concat_strings_sep(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let sep = ev.force_str(a[0], p)?;
    let list = ev.force_list(a[1], p)?;
    let mut out = String::new();
    for (i, t) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(&sep);
        }
        out.push_str(&coerce(ev, *t, false, true, p)?);
    }
    Ok(Value::str(&out))
}

pub(super) fn hash_string(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    use sha2::Digest;
    let algo = ev.force_str(a[0], p)?;
    let s = coerce(ev, a[1], false, true, p)?;
    let digest: Vec<u8> = match &*algo {
        "sha256" => sha2::Sha256::digest(s.as_bytes()).to_vec(),
        "sha512" => sha2::Sha512::digest(s.as_bytes()).to_vec(),
        "md5" | "sha1" => {
            return Err(EvalError::unsupported(
                format!("builtins.hashString \"{algo}\""),
                p,
            ))
        }
        other => {
            return Err(EvalError::eval(
                format!("unknown hash algorithm '{other}'"),
                p,
            ))
        }
    };
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Value::str(&hex))
}

/// Nix's POSIX extended regular expression `pattern` in Rust's syntax: the common subset
/// (classes, groups, repetition, alternation) means the same in both; anything Rust rejects is
/// left to Nix rather than guessed at.
fn regex(pattern: &str, anchored: bool, p: Option<Pos>) -> Result<regex::Regex, EvalError> {
    let text = if anchored {
        format!("^(?:{pattern})$")
    } else {
        pattern.to_owned()
    };
    regex::Regex::new(&text)
        .map_err(|_| EvalError::unsupported(format!("the regular expression \"{pattern}\""), p))
}

/// The capture groups of a match, as `match` and `split` return them (null if unmatched).
fn groups(ev: &mut Evaluator, caps: &regex::Captures) -> Value {
    let items = (1..caps.len())
        .map(|i| {
            let v = caps.get(i).map_or(Value::Null, |m| Value::str(m.as_str()));
            ev.done(v)
        })
        .collect();
    Value::List(Rc::new(items))
}

pub(super) fn match_(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let pattern = ev.force_str(a[0], p)?;
    let s = ev.force_str(a[1], p)?;
    let re = regex(&pattern, true, p)?;
    Ok(match re.captures(&s) {
        Some(caps) => groups(ev, &caps),
        None => Value::Null,
    })
}

pub(super) fn split(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    let pattern = ev.force_str(a[0], p)?;
    let s = ev.force_str(a[1], p)?;
    let re = regex(&pattern, false, p)?;
    let mut out = Vec::new();
    let mut last = 0;
    for caps in re.captures_iter(&s) {
        let whole = caps.get(0).expect("group 0 always matches");
        out.push(ev.done(Value::str(&s[last..whole.start()])));
        let g = groups(ev, &caps);
        out.push(ev.done(g));
        last = whole.end();
    }
    out.push(ev.done(Value::str(&s[last..])));
    Ok(Value::List(Rc::new(out)))
}

pub(super) fn replace_strings(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let from = ev.force_list(a[0], p)?;
    let to = ev.force_list(a[1], p)?;
    let s = ev.force_str(a[2], p)?;
    if from.len() != to.len() {
        return Err(EvalError::eval(
            "'from' and 'to' arguments to 'replaceStrings' have different lengths",
            p,
        ));
    }
    let mut pats = Vec::with_capacity(from.len());
    for t in from.iter() {
        pats.push(ev.force_str(*t, p)?);
    }
    // Replacements are forced only when their pattern is found, as in Nix.
    let mut subs: Vec<Option<Rc<str>>> = vec![None; to.len()];
    let bytes = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i <= bytes.len() {
        let found = pats
            .iter()
            .position(|pat| bytes[i..].starts_with(pat.as_bytes()));
        match found {
            Some(k) => {
                if subs[k].is_none() {
                    subs[k] = Some(ev.force_str(to[k], p)?);
                }
                out.extend_from_slice(subs[k].as_deref().unwrap_or("").as_bytes());
                if pats[k].is_empty() {
                    if i < bytes.len() {
                        out.push(bytes[i]);
                    }
                    i += 1;
                } else {
                    i += pats[k].len();
                }
            }
            None => {
                if i < bytes.len() {
                    out.push(bytes[i]);
                }
                i += 1;
            }
        }
    }
    Ok(Value::str(&String::from_utf8_lossy(&out)))
}

pub(super) fn string_length(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    Ok(Value::Int(coerce(ev, a[0], false, true, p)?.len() as i64))
}

pub(super) fn substring(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let start = ev.force_int(a[0], p)?;
    let len = ev.force_int(a[1], p)?;
    let s = coerce(ev, a[2], false, true, p)?;
    if start < 0 {
        return Err(EvalError::eval("negative start position in 'substring'", p));
    }
    let bytes = s.as_bytes();
    let start = (start as usize).min(bytes.len());
    let end = if len < 0 {
        bytes.len()
    } else {
        start.saturating_add(len as usize).min(bytes.len())
    };
    Ok(Value::str(&String::from_utf8_lossy(&bytes[start..end])))
}

pub(super) fn to_string(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    Ok(Value::str(&coerce(ev, a[0], true, false, p)?))
}

pub(super) fn unsafe_discard_string_context(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    Ok(Value::Str(ev.force_str(a[0], p)?))
}
