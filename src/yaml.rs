//! How pullgate reads its own YAML files (policies and settings): YAML 1.2 booleans, so `action: off`
//! stays the word "off" instead of turning into `false`.

/// The parsing options for every pullgate-owned YAML file.
pub fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options
}
