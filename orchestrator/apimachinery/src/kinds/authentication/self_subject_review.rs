//! `authentication.k8s.io SelfSubjectReview` (create only: answered, never stored).

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "SelfSubjectReview",
    plural: "selfsubjectreviews",
    singular: "selfsubjectreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    list_kind: "SelfSubjectReviewList",
    subresources: &[],
    verbs: CREATE_ONLY,
    strategy: &SelfSubjectReviewStrategy,
};

/// The strategy of `SelfSubjectReview`.
pub struct SelfSubjectReviewStrategy;

impl KindStrategy for SelfSubjectReviewStrategy {
    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::authentication::v1::SelfSubjectReview>(res, obj)
    }
}
