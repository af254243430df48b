//! One adapter per kind: how its spec maps onto its platform client. Short and boring by design.

/// `ManagedResource` for a kind whose frame is the plain `ManagedFields` (deletion policy Delete or Orphan):
/// the same four lines for each, so written once.
macro_rules! managed_resource {
    ($kind:ty, $observation:ty) => {
        impl $crate::adapter::ManagedResource for $kind {
            type Observation = $observation;

            fn connection_ref(&self) -> &tether_api::ConnectionRef {
                &self.spec.managed.connection_ref
            }
            fn deletes_remote(&self) -> bool {
                self.spec.managed.deletion_policy == tether_api::DeletionPolicy::Delete
            }
            fn observe_only(&self) -> bool {
                self.spec.managed.management_policy == tether_api::ManagementPolicy::ObserveOnly
            }
            fn managed_status(&self) -> Option<&tether_api::ManagedStatus<$observation>> {
                self.status.as_ref()
            }
            fn outputs_secret(&self) -> Option<&str> {
                self.spec.managed.write_outputs_to.as_deref()
            }
        }
    };
}

pub mod apolo;
pub mod civis;
pub mod iguazio;
mod keys;
pub mod peak;
pub mod ubiops;

pub use keys::spec_fields;

use kube::ResourceExt;
use tether_platforms::Error as PlatformError;

use crate::adapter::{EXTERNAL_ID, ManagedResource};

/// The resource a remote object belongs to, as Tether marks it on the platform (for the kinds found by a
/// natural key, which two resources in two namespaces can both name): the resource's uid and, where the
/// platform's field can hold it, its `namespace/name`, so that a conflict can name the first owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    /// `metadata.uid` of the owning resource.
    pub uid: String,
    /// `namespace/name` of the owning resource, when the mark carries it.
    pub reference: Option<String>,
}

impl Owner {
    /// The mark `cr` puts on its remote object.
    pub fn of(cr: &impl ManagedResource) -> Self {
        let reference = format!("{}/{}", cr.namespace().unwrap_or_default(), cr.name_any());
        Owner { uid: cr.uid().unwrap_or_default(), reference: Some(reference) }
    }
}

/// The owner `mark` names when it is another resource, unless `cr` asked to adopt the object with the
/// annotation `tether.dev/external-id` (then it is `cr`'s, whatever the mark says, and it is re-marked).
/// An object without a mark (made outside Tether, or by a Tether before marks) is not another's: it is
/// adopted and marked by the next update. Nor is one marked by an earlier resource of the same namespace
/// and name (deleted with deletionPolicy: Orphan, then applied again, as GitOps tools do): names are
/// unique in a namespace, so that one is gone, and the namespace's team takes its object back.
pub(crate) fn foreign<'a, K: ManagedResource>(cr: &K, mark: Option<&'a Owner>) -> Option<&'a Owner> {
    let ours = cr.uid();
    let same_name = |m: &Owner| m.reference.is_some() && m.reference == Owner::of(cr).reference;
    mark.filter(|m| cr.adopt_id().is_none() && Some(m.uid.as_str()) != ours.as_deref() && !same_name(m))
}

/// What `observe` makes of the owner mark of the object it found for `cr`. `Ok(true)`: report it (it is
/// this resource's, unmarked, adopted by annotation, or only watched under ObserveOnly, which never
/// writes). `Ok(false)`: it is another resource's and this one is being deleted, so it is reported absent
/// and nothing is deleted. Otherwise `Conflict`, naming the owner.
pub(crate) fn may_observe<K: ManagedResource>(
    cr: &K,
    mark: Option<&Owner>,
    object: &str,
    id: &str,
) -> Result<bool, PlatformError> {
    match foreign(cr, mark) {
        None => Ok(true),
        Some(_) if cr.meta().deletion_timestamp.is_some() => Ok(false),
        Some(_) if cr.observe_only() => Ok(true),
        Some(owner) => Err(conflict(cr, object, owner, id)),
    }
}

/// The refusal to manage `object` (e.g. "UbiOps service proj/scoring") for `cr`, as `owner` manages it;
/// `id` is what the annotation `tether.dev/external-id` would name to adopt it.
pub(crate) fn conflict<K: ManagedResource>(_cr: &K, object: &str, owner: &Owner, id: &str) -> PlatformError {
    let kind = K::kind(&());
    let by = match &owner.reference {
        Some(reference) => format!("{kind} {reference} (uid {})", owner.uid),
        None => format!("another {kind} (uid {})", owner.uid),
    };
    let adopt = format!("adopt it with the annotation {EXTERNAL_ID}: {id}");
    PlatformError::Conflict(format!(
        "{object} is managed by {by}; choose another name, or {adopt} after deleting that resource with \
         deletionPolicy: Orphan"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(uid: &str, annotations: serde_json::Value) -> tether_api::UbiService {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "UbiService",
            "metadata": {"name": "scoring", "namespace": "team-a", "uid": uid, "annotations": annotations},
            "spec": {"connectionRef": {"name": "ubiops"}, "project": "proj", "name": "scoring",
                     "deployment": "dep-1", "port": 8080},
        }))
        .unwrap()
    }

    #[test]
    fn only_another_live_resource_owns_a_marked_object() {
        let cr = service("u2", serde_json::json!({}));
        let mark = |uid: &str, reference: Option<&str>| Owner { uid: uid.into(), reference: reference.map(Into::into) };
        let other_team = mark("u1", Some("team-b/scoring"));
        assert_eq!(foreign(&cr, Some(&other_team)), Some(&other_team), "another namespace's resource");
        let unnamed = mark("u1", None);
        assert_eq!(foreign(&cr, Some(&unnamed)), Some(&unnamed), "another uid, name unknown");
        assert_eq!(foreign(&cr, Some(&mark("u2", None))), None, "its own mark");
        assert_eq!(foreign(&cr, None), None, "unmarked: adopted");
        let earlier = mark("u1", Some("team-a/scoring"));
        assert_eq!(foreign(&cr, Some(&earlier)), None, "an earlier resource of the same name (Orphan, re-applied)");
        let adopting = service("u2", serde_json::json!({EXTERNAL_ID: "id-1"}));
        assert_eq!(foreign(&adopting, Some(&other_team)), None, "adopted by annotation");
    }
}
