//! `authorization.k8s.io SelfSubjectAccessReview` (create only: answered, never stored).

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "authorization.k8s.io",
    version: "v1",
    kind: "SelfSubjectAccessReview",
    plural: "selfsubjectaccessreviews",
    singular: "selfsubjectaccessreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    list_kind: "SelfSubjectAccessReviewList",
    subresources: &[],
    verbs: CREATE_ONLY,
    strategy: &SelfSubjectAccessReviewStrategy,
};

/// The strategy of `SelfSubjectAccessReview`.
pub struct SelfSubjectAccessReviewStrategy;

impl KindStrategy for SelfSubjectAccessReviewStrategy {
    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview>(res, obj)
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        super::review::validate_access_spec(obj, errs);
    }
}
