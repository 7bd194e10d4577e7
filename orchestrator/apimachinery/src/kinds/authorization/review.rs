//! What the access reviews share: a review is created, answered and never stored.

use crate::kinds::prelude::*;

/// `spec` of an access review names exactly one of a resource and a non-resource request.
pub fn validate_access_spec(obj: &Value, errs: &mut Errors) {
    let spec = spec_of(obj);
    let resource = present(spec, "resourceAttributes");
    let non_resource = present(spec, "nonResourceAttributes");
    if resource == non_resource {
        let detail = "exactly one of nonResourceAttributes or resourceAttributes must be specified";
        errs.push(FieldError::invalid(&Path::new("spec.resourceAttributes"), json!(null), detail));
    }
}
