//! `${VAR}` expansion, since a distroless image has no shell to do it: `${VAR}`,
//! `${VAR:-default}` (the default when VAR is unset or empty) and `$$` for a literal `$`.
//! The lookup is a parameter, so that this module reads no environment and tests need none.

/// Expands `${VAR}`, `${VAR:-default}` (default when VAR is unset or empty) and `$$` (a literal `$`).
/// `$NAME` without braces is rejected rather than kept, since that is almost always a mistake.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing_brace(body).ok_or_else(|| {
                format!("unclosed `${{` in {text:?}: close it with `}}`, or write `$$` for a literal `$`")
            })?;
            out.push_str(&expand_reference(&body[..end], lookup)?);
            rest = &body[end + 1..];
        } else if after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            return Err(format!(
                "`${name}` is not expanded: write `${{{name}}}` to expand it, or `$${name}` for a literal `$`"
            ));
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands `text` from the launcher's own environment.
pub fn from_environment(text: &str) -> Result<String, String> {
    expand(text, &|name| std::env::var(name).ok())
}

/// The index of the `}` closing a `${`, skipping nested references in defaults.
fn closing_brace(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'$' if bytes.get(index + 1) == Some(&b'$') => index += 1,
            b'$' if bytes.get(index + 1) == Some(&b'{') => {
                depth += 1;
                index += 1;
            }
            b'}' if depth == 0 => return Some(index),
            b'}' => depth -= 1,
            _ => {}
        }
        index += 1;
    }
    None
}

fn expand_reference(reference: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    let valid_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(format!(
            "`${{{reference}}}` is not a variable reference: write `${{NAME}}` or `${{NAME:-default}}` \
             (NAME made of letters, digits and _)"
        ));
    }
    match (lookup(name), default) {
        (Some(value), None) => Ok(value),
        (Some(value), Some(_)) if !value.is_empty() => Ok(value),
        (_, Some(default)) => expand(default, lookup),
        (None, None) => Err(format!(
            "environment variable {name} is not set: set it, or give a default with `${{{name}:-default}}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/root".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    /// Each `(text, expanded)`: `text` expands to `expanded`.
    fn assert_expands(cases: &[(&str, &str)]) {
        for (text, expanded) in cases {
            assert_eq!(expand(text, &lookup).as_deref(), Ok(*expanded), "expanding {text:?}");
        }
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        assert_expands(&[
            ("${HOME}/x", "/root/x"),
            ("${UNSET:-/tmp/metrics}", "/tmp/metrics"),
            ("${HOME:-/other}", "/root"),
            ("${EMPTY:-fallback}", "fallback"),
            ("${EMPTY}", ""),
            ("${UNSET:-}", ""),
            ("a${UNSET:-${HOME}}b", "a/rootb"),
            ("${UNSET:-x}${UNSET:-y}", "xy"),
        ]);
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        assert_expands(&[
            ("$$HOME costs $$5", "$HOME costs $5"),
            ("${UNSET:-$$}", "$"),
            ("ends with $", "ends with $"),
            ("no references", "no references"),
        ]);
    }

    #[test]
    fn rejects_unset_variables_and_bad_references() {
        let unset = expand("${DATABASE_URL}", &lookup).unwrap_err();
        assert!(unset.contains("DATABASE_URL is not set"), "{unset}");
        assert!(expand("${HOME", &lookup).unwrap_err().contains("unclosed"));
        assert!(expand("${1BAD}", &lookup).unwrap_err().contains("not a variable reference"));
        assert!(expand("$HOME", &lookup).unwrap_err().contains("${HOME}"));
    }
}
