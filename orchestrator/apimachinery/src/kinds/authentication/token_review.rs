//! `authentication.k8s.io TokenReview` (create only: answered, never stored).

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "TokenReview",
    plural: "tokenreviews",
    singular: "tokenreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    list_kind: "TokenReviewList",
    subresources: &[],
    verbs: CREATE_ONLY,
    strategy: &TokenReviewStrategy,
};

/// The strategy of `TokenReview`.
pub struct TokenReviewStrategy;

impl KindStrategy for TokenReviewStrategy {
    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::authentication::v1::TokenReview>(res, obj)
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        if s(spec_of(obj), "token").is_none_or(str::is_empty) {
            errs.push(FieldError::required(&Path::new("spec.token"), ""));
        }
    }
}
