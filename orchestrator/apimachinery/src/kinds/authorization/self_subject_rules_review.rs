//! `authorization.k8s.io SelfSubjectRulesReview` (create only: answered, never stored).

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "authorization.k8s.io",
    version: "v1",
    kind: "SelfSubjectRulesReview",
    plural: "selfsubjectrulesreviews",
    singular: "selfsubjectrulesreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    list_kind: "SelfSubjectRulesReviewList",
    subresources: &[],
    verbs: CREATE_ONLY,
    strategy: &SelfSubjectRulesReviewStrategy,
};

/// The strategy of `SelfSubjectRulesReview`.
pub struct SelfSubjectRulesReviewStrategy;

impl KindStrategy for SelfSubjectRulesReviewStrategy {
    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::authorization::v1::SelfSubjectRulesReview>(res, obj)
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        if s(spec_of(obj), "namespace").is_none_or(str::is_empty) {
            errs.push(FieldError::required(&Path::new("spec.namespace"), ""));
        }
    }
}
