//! Syntax errors: rnix's parse errors turned into located messages in Nix's words
//! ("unexpected '=', expecting ';'"), instead of rnix's debug rendering.

use rnix::{ParseError, SyntaxKind};

use super::diag::{EvalError, Pos};

/// Bracket nesting beyond which we do not parse: rnix's parser gets slow (quadratic) on very deep
/// trees, and real rules files never come close. Nix itself accepts more, so this is
/// "unsupported" (and may fall back to `nix-instantiate`), not an error.
const MAX_NESTING: usize = 1000;

/// Rejects input nested deeper than [`MAX_NESTING`] brackets, before parsing it.
pub(crate) fn check_nesting(file: u32, text: &str) -> Result<(), EvalError> {
    use SyntaxKind::*;
    // Every opening token starts with one of these bytes, so with no more of them than the
    // limit the input cannot nest deeper; this spares most files a second tokenization.
    let openers = text
        .bytes()
        .filter(|b| matches!(b, b'{' | b'[' | b'('))
        .count();
    if openers <= MAX_NESTING {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut offset = 0usize;
    for (kind, token) in rnix::tokenize(text) {
        match kind {
            TOKEN_L_BRACE | TOKEN_L_BRACK | TOKEN_L_PAREN | TOKEN_INTERPOL_START => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(EvalError::unsupported(
                        format!("nesting deeper than {MAX_NESTING} brackets"),
                        Some(Pos {
                            file,
                            offset: offset as u32,
                        }),
                    ));
                }
            }
            TOKEN_R_BRACE | TOKEN_R_BRACK | TOKEN_R_PAREN | TOKEN_INTERPOL_END => {
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        offset += token.len();
    }
    Ok(())
}

/// The first parse error of file `file`, located.
pub(crate) fn error(file: u32, text: &str, err: &ParseError) -> EvalError {
    let at = |range: rnix::TextRange| {
        (
            Pos {
                file,
                offset: range.start().into(),
            },
            u32::from(range.len()).max(1),
        )
    };
    let end = Pos {
        file,
        offset: text.len() as u32,
    };
    match err {
        ParseError::Unexpected(range) => {
            let (pos, len) = at(*range);
            let found = text
                .get(usize::from(range.start())..usize::from(range.end()))
                .unwrap_or("")
                .trim();
            EvalError::syntax(format!("syntax error, unexpected '{found}'"), pos, len)
        }
        ParseError::UnexpectedExtra(range) => {
            let (pos, len) = at(*range);
            EvalError::syntax("syntax error, unexpected extra input", pos, len)
        }
        ParseError::UnexpectedWanted(got, range, wanted) => {
            let (mut pos, len) = at(*range);
            if *got == SyntaxKind::TOKEN_ERROR {
                // rnix flags what follows an unterminated string's opening quote; point at the
                // quote, where the broken string starts.
                let before = &text[..pos.offset as usize];
                if before.ends_with("''") {
                    pos.offset -= 2;
                } else if before.ends_with('"') {
                    pos.offset -= 1;
                }
            }
            EvalError::syntax(
                format!(
                    "syntax error, unexpected {}, expecting {}",
                    describe(*got),
                    expecting(wanted)
                ),
                pos,
                len,
            )
        }
        ParseError::UnexpectedDoubleBind(range) => {
            let (pos, len) = at(*range);
            EvalError::syntax("syntax error, a function argument is bound twice", pos, len)
        }
        ParseError::UnexpectedEOF => {
            EvalError::syntax("syntax error, unexpected end of file", end, 1)
        }
        ParseError::UnexpectedEOFWanted(wanted) => EvalError::syntax(
            format!(
                "syntax error, unexpected end of file, expecting {}",
                expecting(wanted)
            ),
            end,
            1,
        ),
        ParseError::DuplicatedArgs(range, name) => {
            let (pos, len) = at(*range);
            EvalError::syntax(
                format!("duplicate formal function argument '{name}'"),
                pos,
                len,
            )
        }
        ParseError::RecursionLimitExceeded => EvalError::unsupported(
            "an expression nested this deeply",
            Some(Pos { file, offset: 0 }),
        ),
        _ => EvalError::syntax(format!("syntax error, {err}"), Pos { file, offset: 0 }, 1),
    }
}

fn expecting(wanted: &[SyntaxKind]) -> String {
    let names: Vec<String> = wanted.iter().map(|k| describe(*k)).collect();
    match names.as_slice() {
        [] => "something else".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A token kind as Nix's parser names it.
fn describe(kind: SyntaxKind) -> String {
    use SyntaxKind::*;
    let s = match kind {
        TOKEN_ADD => "'+'",
        TOKEN_AND_AND => "'&&'",
        TOKEN_ASSIGN => "'='",
        TOKEN_ASSERT => "'assert'",
        TOKEN_AT => "'@'",
        TOKEN_COLON => "':'",
        TOKEN_COMMA => "','",
        TOKEN_CONCAT => "'++'",
        TOKEN_DIV => "'/'",
        TOKEN_DOT => "'.'",
        TOKEN_ELLIPSIS => "'...'",
        TOKEN_ELSE => "'else'",
        TOKEN_EQUAL => "'=='",
        TOKEN_FLOAT => "float",
        TOKEN_IDENT => "identifier",
        TOKEN_IF => "'if'",
        TOKEN_IMPLICATION => "'->'",
        TOKEN_IN => "'in'",
        TOKEN_INHERIT => "'inherit'",
        TOKEN_INTEGER => "integer",
        TOKEN_INTERPOL_END => "'}'",
        TOKEN_INTERPOL_START => "'${'",
        TOKEN_INVERT => "'!'",
        TOKEN_L_BRACE => "'{'",
        TOKEN_L_BRACK => "'['",
        TOKEN_L_PAREN => "'('",
        TOKEN_LESS => "'<'",
        TOKEN_LESS_OR_EQ => "'<='",
        TOKEN_LET => "'let'",
        TOKEN_MORE => "'>'",
        TOKEN_MORE_OR_EQ => "'>='",
        TOKEN_MUL => "'*'",
        TOKEN_NOT_EQUAL => "'!='",
        TOKEN_OR => "'or'",
        TOKEN_OR_OR => "'||'",
        TOKEN_PATH_ABS | TOKEN_PATH_REL | TOKEN_PATH_HOME => "path",
        TOKEN_PATH_SEARCH => "search path",
        TOKEN_QUESTION => "'?'",
        TOKEN_R_BRACE => "'}'",
        TOKEN_R_BRACK => "']'",
        TOKEN_R_PAREN => "')'",
        TOKEN_REC => "'rec'",
        TOKEN_SEMICOLON => "';'",
        TOKEN_STRING_CONTENT => "string content",
        TOKEN_STRING_END | TOKEN_STRING_START => "'\"'",
        TOKEN_SUB => "'-'",
        TOKEN_THEN => "'then'",
        TOKEN_UPDATE => "'//'",
        TOKEN_URI => "URI",
        TOKEN_WITH => "'with'",
        TOKEN_ERROR => "invalid token",
        TOKEN_CUR_POS => "'__curPos'",
        other => return format!("{other:?}").to_lowercase().replace('_', " "),
    };
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_limited_at_exactly_max_nesting_brackets() {
        let at_limit = format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert!(check_nesting(0, &at_limit).is_ok());
        let over = format!(
            "{}{}",
            "[".repeat(MAX_NESTING + 1),
            "]".repeat(MAX_NESTING + 1)
        );
        assert!(check_nesting(0, &over).is_err());
        let interpolated = format!(
            "{}1{}",
            "\"${".repeat(MAX_NESTING + 1),
            "}\"".repeat(MAX_NESTING + 1)
        );
        assert!(check_nesting(0, &interpolated).is_err());
    }

    #[test]
    fn many_shallow_brackets_are_not_deep_nesting() {
        assert!(check_nesting(0, &"[ ] ".repeat(3 * MAX_NESTING)).is_ok());
        // Brackets inside strings are not tokens and do not count.
        let quoted = format!("[ \"{}\" ]", "[".repeat(3 * MAX_NESTING));
        assert!(check_nesting(0, &quoted).is_ok());
    }
}
