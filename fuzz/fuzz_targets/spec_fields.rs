//! `tether_controller::adapters::spec_fields` (adapters/keys.rs) over arbitrary JSON, with the `skip` and
//! `verbatim` lists each adapter passes and with none: frame and skipped fields go, every other key is
//! snake_cased recursively except under the verbatim keys, which are kept as given, and a second pass
//! changes nothing. (Keys that collide once snake_cased, `fooBar` and `foo_bar`, keep one value: a typed
//! spec cannot have both, see `spec_kinds`.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tether_controller::adapters::spec_fields;
use tether_fuzz::{check_spec_fields, decode};

const CALLS: &[(&[&str], &[&str])] =
    &[(&["project"], &["labels"]), (&["labels", "serviceConfig", "advanced"], &["pvc"]), (&[], &[])];

fuzz_target!(|data: &[u8]| {
    let Some(spec) = decode::<Value>(data) else { return };
    for (skip, verbatim) in CALLS {
        let fields = spec_fields(&spec, skip, verbatim);
        check_spec_fields(&spec, &fields, skip, verbatim, false);
        let again = spec_fields(&Value::Object(fields.clone()), &[], verbatim);
        assert_eq!(again, fields, "spec_fields is not idempotent");
    }
});
