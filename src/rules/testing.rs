//! The evaluator's test helpers, shared by every module's tests: evaluate a snippet as the
//! file `input.nix` in the temp directory, and compare the JSON or the error.

use crate::rules::evaluate_source;

/// Evaluates `src` with our evaluator and expects `expected`, exactly.
#[track_caller]
pub(crate) fn check_eval(src: &str, expected: serde_json::Value) {
    match evaluate_source(src, &std::env::temp_dir()) {
        Ok(v) => assert_eq!(v, expected, "{src}"),
        Err(e) => panic!("{src}: {e}"),
    }
}

/// Evaluates `src`, expects an error located in it whose message contains `expected`, and
/// returns the whole message.
#[track_caller]
pub(crate) fn check_err(src: &str, expected: &str) -> String {
    match evaluate_source(src, &std::env::temp_dir()) {
        Ok(v) => panic!("{src}: evaluated to {v}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(expected),
                "{src}: wanted {expected:?} in:\n{msg}"
            );
            assert!(
                msg.starts_with("input.nix:"),
                "{src}: no location in:\n{msg}"
            );
            msg
        }
    }
}
