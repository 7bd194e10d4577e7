//! `authorization.k8s.io SubjectAccessReview` (create only: answered, never stored).

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "authorization.k8s.io",
    version: "v1",
    kind: "SubjectAccessReview",
    plural: "subjectaccessreviews",
    singular: "subjectaccessreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    list_kind: "SubjectAccessReviewList",
    subresources: &[],
    verbs: CREATE_ONLY,
    strategy: &SubjectAccessReviewStrategy,
};

/// The strategy of `SubjectAccessReview`.
pub struct SubjectAccessReviewStrategy;

impl KindStrategy for SubjectAccessReviewStrategy {
    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::authorization::v1::SubjectAccessReview>(res, obj)
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        super::review::validate_access_spec(obj, errs);
        let spec = spec_of(obj);
        if s(spec, "user").is_none_or(str::is_empty) && arr(spec, "groups").is_empty() {
            let detail = "at least one of user or group must be specified";
            errs.push(FieldError::invalid(&Path::new("spec.user"), json!(""), detail));
        }
    }
}
