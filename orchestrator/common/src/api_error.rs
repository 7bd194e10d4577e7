//! The API error codes callers branch on (NotFound, Conflict/AlreadyExists).

/// HTTP status code of an API error (`None` for transport and decoding errors).
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether the API answered 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    api_code(e) == Some(404)
}

/// Whether the API answered 409 (AlreadyExists or Conflict).
pub fn is_conflict(e: &kube::Error) -> bool {
    api_code(e) == Some(409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("x", "y").with_code(code),
        ))
    }

    #[test]
    fn codes_of_api_errors_only() {
        assert!(is_not_found(&api_error(404)) && !is_conflict(&api_error(404)));
        assert!(is_conflict(&api_error(409)) && !is_not_found(&api_error(409)));
        assert_eq!(
            api_code(&kube::Error::LinesCodecMaxLineLengthExceeded),
            None
        );
    }
}
