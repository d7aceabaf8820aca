//! `${VAR}` expansion in config strings. `$$` stands for a literal `$`; a
//! `$` followed by anything else is kept as is.

/// The result of expanding one string.
pub(crate) struct Expanded {
    pub value: String,
    /// Whether any `${VAR}` was substituted: such values are treated as
    /// secrets wherever they are shown.
    pub from_env: bool,
}

/// Expands `input`; the error names the missing variable (never a value).
pub(crate) fn expand(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, String> {
    let mut value = String::with_capacity(input.len());
    let mut from_env = false;
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        value.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            value.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| "unclosed `${` (write `$$` for a literal `$`)".to_owned())?;
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{name}}}` is not a variable name (letters, digits and `_`)"
                ));
            }
            let v = env(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            value.push_str(&v);
            from_env = true;
            rest = &tail[end + 1..];
        } else {
            value.push('$');
            rest = after;
        }
    }
    value.push_str(rest);
    Ok(Expanded { value, from_env })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr3t".to_owned())
    }

    #[test]
    fn expands_and_escapes() {
        let e = expand("Bearer ${TOKEN}", &env).unwrap();
        assert_eq!(e.value, "Bearer s3cr3t");
        assert!(e.from_env);
        let e = expand("cost $5, $$HOME", &env).unwrap();
        assert_eq!(e.value, "cost $5, $HOME");
        assert!(!e.from_env);
    }

    #[test]
    fn errors_name_the_variable_only() {
        assert_eq!(
            expand("${MISSING}", &env).err().unwrap(),
            "environment variable `MISSING` is not set"
        );
        assert!(expand("${TOKEN", &env).err().unwrap().contains("unclosed"));
        assert!(
            expand("${A-B}", &env)
                .err()
                .unwrap()
                .contains("not a variable name")
        );
    }
}
