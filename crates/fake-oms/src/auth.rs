//! DRF `TokenAuthentication` as the OMS runs it: `Authorization: Token <key>`, with DRF's
//! exact `detail` texts for a missing, malformed or wrong token.

/// DRF `TokenAuthentication` plus `IsAuthenticated`.
pub(super) fn authenticate(header: Option<&str>, token: &str) -> Result<(), &'static str> {
    const NOT_PROVIDED: &str = "Authentication credentials were not provided.";
    let Some(h) = header else {
        return Err(NOT_PROVIDED);
    };
    let parts: Vec<&str> = h.split_ascii_whitespace().collect();
    match parts.as_slice() {
        [kw, ..] if !kw.eq_ignore_ascii_case("token") => Err(NOT_PROVIDED),
        [] => Err(NOT_PROVIDED),
        [_] => Err("Invalid token header. No credentials provided."),
        [_, t] => {
            if *t == token {
                Ok(())
            } else {
                Err("Invalid token.")
            }
        }
        _ => Err("Invalid token header. Token string should not contain spaces."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_header_forms() {
        assert_eq!(authenticate(Some("Token abc"), "abc"), Ok(()));
        assert_eq!(authenticate(Some("token  abc "), "abc"), Ok(()));
        assert_eq!(
            authenticate(Some("Token abd"), "abc"),
            Err("Invalid token.")
        );
        assert_eq!(
            authenticate(None, "abc"),
            Err("Authentication credentials were not provided.")
        );
        assert_eq!(
            authenticate(Some("Bearer abc"), "abc"),
            Err("Authentication credentials were not provided.")
        );
        assert!(authenticate(Some("Token"), "abc").is_err());
        assert!(authenticate(Some("Token a b"), "abc").is_err());
    }
}
