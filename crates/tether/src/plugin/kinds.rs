//! The five managed kinds as the plugin names them (`civisservice/NAME`, `civis/NAME`, ...), and the one
//! place that maps each to its resource type and adapter.

use kube::core::ApiResource;
use tether_api::Platform;

/// A managed kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    AppService,
    CivisService,
    ApoloApp,
    UbiService,
    PeakWebapp,
}

impl Kind {
    /// Every managed kind, in the order `status` prints them.
    pub const ALL: [Kind; 5] =
        [Kind::AppService, Kind::CivisService, Kind::ApoloApp, Kind::UbiService, Kind::PeakWebapp];

    /// The kind's name, as in `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::AppService => "AppService",
            Kind::CivisService => "CivisService",
            Kind::ApoloApp => "ApoloApp",
            Kind::UbiService => "UbiService",
            Kind::PeakWebapp => "PeakWebapp",
        }
    }

    /// The short name the CRD declares.
    fn short(self) -> &'static str {
        match self {
            Kind::AppService => "igz",
            Kind::CivisService => "civis",
            Kind::ApoloApp => "apolo",
            Kind::UbiService => "ubi",
            Kind::PeakWebapp => "peak",
        }
    }

    /// The platform the kind lives on.
    pub fn platform(self) -> Platform {
        match self {
            Kind::AppService => Platform::Iguazio,
            Kind::CivisService => Platform::Civis,
            Kind::ApoloApp => Platform::Apolo,
            Kind::UbiService => Platform::Ubiops,
            Kind::PeakWebapp => Platform::Peak,
        }
    }

    /// The platform's name for humans.
    pub fn platform_name(self) -> &'static str {
        match self {
            Kind::AppService => "Iguazio",
            Kind::CivisService => "Civis",
            Kind::ApoloApp => "Apolo",
            Kind::UbiService => "UbiOps",
            Kind::PeakWebapp => "Peak",
        }
    }

    /// What the remote object is called on its platform.
    pub fn remote_noun(self) -> &'static str {
        match self {
            Kind::AppService => "Iguazio app service",
            Kind::CivisService => "Civis service",
            Kind::ApoloApp => "Apolo app",
            Kind::UbiService => "UbiOps service",
            Kind::PeakWebapp => "Peak webapp",
        }
    }

    /// The kind's API resource, for dynamic (untyped) reads.
    pub fn api_resource(self) -> ApiResource {
        match self {
            Kind::AppService => ApiResource::erase::<tether_api::AppService>(&()),
            Kind::CivisService => ApiResource::erase::<tether_api::CivisService>(&()),
            Kind::ApoloApp => ApiResource::erase::<tether_api::ApoloApp>(&()),
            Kind::UbiService => ApiResource::erase::<tether_api::UbiService>(&()),
            Kind::PeakWebapp => ApiResource::erase::<tether_api::PeakWebapp>(&()),
        }
    }

    /// The kind `word` names: its kind, plural, singular or short name, any case, with or without the
    /// group (`civisservices.tether.dev`).
    pub fn parse(word: &str) -> Option<Kind> {
        let word = word.to_ascii_lowercase();
        let word = word.strip_suffix(".tether.dev").unwrap_or(&word);
        Kind::ALL.into_iter().find(|k| {
            let lower = k.name().to_ascii_lowercase();
            word == lower || word == format!("{lower}s") || word == k.short()
        })
    }
}

/// `KIND/NAME` (or `KIND` and `NAME` as two words) as the commands take it.
pub fn target(first: &str, second: Option<&str>) -> anyhow::Result<(Kind, String)> {
    let (kind, name) = match (first.split_once('/'), second) {
        (Some((kind, name)), None) => (kind, name),
        (None, Some(name)) => (first, name),
        (Some(_), Some(_)) => anyhow::bail!("give the resource as KIND/NAME or as KIND NAME, not both"),
        (None, None) => anyhow::bail!("give the resource as KIND/NAME, e.g. civisservice/reports"),
    };
    let kind = Kind::parse(kind).ok_or_else(|| {
        let known: Vec<String> =
            Kind::ALL.iter().map(|k| format!("{} ({})", k.name().to_ascii_lowercase(), k.short())).collect();
        anyhow::anyhow!("{kind:?} is not a Tether kind; one of: {}", known.join(", "))
    })?;
    anyhow::ensure!(!name.is_empty(), "no resource name after {kind:?}/", kind = kind.name());
    Ok((kind, name.to_string()))
}

/// Runs `$body` with `$adapter` the adapter type of `$kind` (and its resource `<$adapter as Adapter>::Resource`).
macro_rules! with_adapter {
    ($kind:expr, $adapter:ident => $body:expr) => {
        match $kind {
            $crate::kinds::Kind::AppService => {
                type $adapter = tether_controller::adapters::iguazio::Iguazio;
                $body
            }
            $crate::kinds::Kind::CivisService => {
                type $adapter = tether_controller::adapters::civis::Civis;
                $body
            }
            $crate::kinds::Kind::ApoloApp => {
                type $adapter = tether_controller::adapters::apolo::Apolo;
                $body
            }
            $crate::kinds::Kind::UbiService => {
                type $adapter = tether_controller::adapters::ubiops::UbiOps;
                $body
            }
            $crate::kinds::Kind::PeakWebapp => {
                type $adapter = tether_controller::adapters::peak::Peak;
                $body
            }
        }
    };
}
pub(crate) use with_adapter;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_kubectl_names_them() {
        assert_eq!(Kind::parse("civisservice"), Some(Kind::CivisService));
        assert_eq!(Kind::parse("ApoloApps"), Some(Kind::ApoloApp));
        assert_eq!(Kind::parse("igz"), Some(Kind::AppService));
        assert_eq!(Kind::parse("peakwebapps.tether.dev"), Some(Kind::PeakWebapp));
        assert_eq!(Kind::parse("pod"), None);
        assert_eq!(target("ubi/scoring", None).unwrap(), (Kind::UbiService, "scoring".into()));
        assert_eq!(target("ubi", Some("scoring")).unwrap(), (Kind::UbiService, "scoring".into()));
        assert!(target("pods/x", None).unwrap_err().to_string().contains("not a Tether kind"));
    }
}
