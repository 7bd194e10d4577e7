//! EndpointSlices by the Service they belong to (their `kubernetes.io/service-name`
//! label), kept up to date from the slice watch so that a Service sync reads only its own
//! slices instead of scanning all of them.

use std::collections::{HashMap, HashSet};

use bpfk_datapath::ServiceName;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::ObjectRef;

use crate::convert;

/// An EndpointSlice as the reflector store keys it.
pub type SliceRef = ObjectRef<EndpointSlice>;

/// What the slice watch reported about one slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SliceChange {
    /// The slice exists as it is now; the Service its label names, if any.
    Applied(SliceRef, Option<ServiceName>),
    Deleted(SliceRef),
}

impl SliceChange {
    /// `slice` was created or updated.
    pub fn applied(slice: &EndpointSlice) -> Self {
        Self::Applied(ObjectRef::from_obj(slice), convert::slice_service(slice))
    }

    /// `slice` was deleted.
    pub fn deleted(slice: &EndpointSlice) -> Self {
        Self::Deleted(ObjectRef::from_obj(slice))
    }
}

/// Service → its EndpointSlices, and back.
#[derive(Debug, Default)]
pub struct SliceIndex {
    slices_of: HashMap<ServiceName, HashSet<SliceRef>>,
    service_of: HashMap<SliceRef, ServiceName>,
}

impl SliceIndex {
    /// The index of `slices` (the store's content after a (re)list).
    pub fn of<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> Self {
        let mut index = Self::default();
        for slice in slices {
            index.record(SliceChange::applied(slice));
        }
        index
    }

    /// Applies `change`; returns the Services whose set of slices changed: the slice's
    /// Service, and the one it left when its label changed.
    pub fn record(&mut self, change: SliceChange) -> Vec<ServiceName> {
        match change {
            SliceChange::Applied(slice, service) => self.apply(slice, service),
            SliceChange::Deleted(slice) => self.forget(&slice).into_iter().collect(),
        }
    }

    /// The slices of `service`.
    pub fn slices_of(&self, service: &ServiceName) -> impl Iterator<Item = &SliceRef> {
        self.slices_of.get(service).into_iter().flatten()
    }

    fn apply(&mut self, slice: SliceRef, service: Option<ServiceName>) -> Vec<ServiceName> {
        let left = match self.service_of.get(&slice) {
            Some(old) if Some(old) == service.as_ref() => None,
            _ => self.forget(&slice),
        };
        let mut changed: Vec<ServiceName> = left.into_iter().collect();
        if let Some(service) = service {
            self.service_of.insert(slice.clone(), service.clone());
            self.slices_of
                .entry(service.clone())
                .or_default()
                .insert(slice);
            changed.push(service);
        }
        changed
    }

    /// Removes `slice`; returns the Service it belonged to.
    fn forget(&mut self, slice: &SliceRef) -> Option<ServiceName> {
        let service = self.service_of.remove(slice)?;
        if let Some(slices) = self.slices_of.get_mut(&service) {
            slices.remove(slice);
            if slices.is_empty() {
                self.slices_of.remove(&service);
            }
        }
        Some(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn slice(name: &str, service: Option<&str>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: service
                    .map(|s| [(convert::SERVICE_NAME_LABEL.to_string(), s.to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: Vec::new(),
            ports: None,
        }
    }

    fn svc(name: &str) -> ServiceName {
        ServiceName::new("ns".to_string(), name.to_string())
    }

    fn names(index: &SliceIndex, service: &str) -> Vec<String> {
        let mut v: Vec<String> = index
            .slices_of(&svc(service))
            .map(|r| r.name.clone())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_service_sees_only_its_own_slices() {
        let index = SliceIndex::of(&[
            slice("web-1", Some("web")),
            slice("web-2", Some("web")),
            slice("db-1", Some("db")),
            slice("orphan", None),
        ]);
        assert_eq!(names(&index, "web"), ["web-1", "web-2"]);
        assert_eq!(names(&index, "db"), ["db-1"]);
        assert!(names(&index, "orphan").is_empty());
        // Same service name, other namespace.
        let other = ServiceName::new("other".to_string(), "web".to_string());
        assert_eq!(index.slices_of(&other).count(), 0);
    }

    #[test]
    fn updates_and_deletes_report_the_services_to_sync() {
        let mut index = SliceIndex::default();
        let web_1 = slice("web-1", Some("web"));
        assert_eq!(index.record(SliceChange::applied(&web_1)), [svc("web")]);
        // An update that keeps the label only touches its service.
        assert_eq!(index.record(SliceChange::applied(&web_1)), [svc("web")]);
        assert_eq!(names(&index, "web"), ["web-1"]);

        // Relabelled: both the old and the new service resync.
        let moved = slice("web-1", Some("db"));
        assert_eq!(
            index.record(SliceChange::applied(&moved)),
            [svc("web"), svc("db")]
        );
        assert!(names(&index, "web").is_empty());
        assert_eq!(names(&index, "db"), ["web-1"]);

        // Label removed: the slice belongs to no service any more.
        let unlabelled = slice("web-1", None);
        assert_eq!(index.record(SliceChange::applied(&unlabelled)), [svc("db")]);
        assert!(names(&index, "db").is_empty());

        index.record(SliceChange::applied(&moved));
        assert_eq!(index.record(SliceChange::deleted(&moved)), [svc("db")]);
        assert!(names(&index, "db").is_empty());
        assert!(index.record(SliceChange::deleted(&moved)).is_empty());
        assert!(index.slices_of.is_empty() && index.service_of.is_empty());
    }
}
