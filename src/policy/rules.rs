//! The static rules: each looks at one container's image reference and pull policy and, when it fires,
//! says what is wrong and how to fix it. Wording follows the troubleshooting guide pullgate encodes.

use super::RuleConfig;
use crate::facts::ContainerFacts;
use crate::image::ImageRef;

/// What a rule says when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    pub message: String,
    pub fix: String,
    /// False when the rule could not be sure (it then warns even where its action is `deny`).
    pub definitive: bool,
}

impl Outcome {
    pub fn new(message: String, fix: String) -> Self {
        Self {
            message,
            fix,
            definitive: true,
        }
    }

    /// An outcome that is never more than a warning.
    pub fn tentative(message: String, fix: String) -> Self {
        Self {
            definitive: false,
            ..Self::new(message, fix)
        }
    }
}

fn outcome(message: impl Into<String>, fix: impl Into<String>) -> Option<Outcome> {
    Some(Outcome::new(message.into(), fix.into()))
}

/// Run one static rule on one container (registry rules are answered in `resolved`).
pub(super) fn check(config: &RuleConfig, container: &ContainerFacts) -> Option<Outcome> {
    let image = match (&container.image, config) {
        (Err(error), RuleConfig::ImageReferenceValid) => {
            return outcome(
                format!("invalid image reference: {error} (kubelet: InvalidImageName)"),
                "write it as [registry/]repository[:tag][@sha256:digest], repository in lowercase",
            );
        }
        // The other rules have nothing to say about a reference that does not parse.
        (Err(_), _) => return None,
        (Ok(image), _) => image,
    };
    match config {
        RuleConfig::ImageReferenceValid
        | RuleConfig::Registry(_)
        | RuleConfig::Start(_)
        | RuleConfig::ImageSize { .. } => None,
        RuleConfig::TagNotLatest => tag_not_latest(image),
        RuleConfig::PullPolicy => pull_policy(
            image,
            container.spec.pull_policy.as_deref(),
            if container.spec.image_path.contains(".volumes[") {
                "pullPolicy"
            } else {
                "imagePullPolicy"
            },
        ),
        RuleConfig::DigestPinned => image.digest().is_none().then(|| {
            Outcome::new(
                "image is not pinned by digest".into(),
                format!("use {}@sha256:<digest>", image.name()),
            )
        }),
        RuleConfig::RegistryAllowed { allow, deny } => {
            let name = image.name();
            if let Some(pattern) = deny.iter().find(|g| g.matches(name)) {
                return outcome(
                    format!(
                        "{name} matches the denied pattern {:?}",
                        pattern.to_string()
                    ),
                    "use an image from an allowed registry",
                );
            }
            if !allow.is_empty() && !allow.iter().any(|g| g.matches(name)) {
                let list: Vec<String> = allow.iter().map(ToString::to_string).collect();
                return outcome(
                    format!("{name} is not from an allowed registry"),
                    format!("use an image matching {}", list.join(", ")),
                );
            }
            None
        }
        RuleConfig::RegistryDeprecated { moves } => {
            let name = image.name();
            moves.iter().find_map(|m| {
                let rest = name.strip_prefix(&m.from)?;
                let on_boundary = rest.is_empty() || rest.starts_with('/');
                on_boundary.then(|| {
                    Outcome::new(
                        format!("registry {} is frozen", m.from),
                        format!("use {}{}", m.to, reference_suffix(image, rest)),
                    )
                })
            })
        }
    }
}

/// `rest` of the repository path followed by the tag and digest, to show the replacement reference.
fn reference_suffix(image: &ImageRef, rest: &str) -> String {
    let mut suffix = rest.to_owned();
    if let Some(tag) = image.tag() {
        suffix.push(':');
        suffix.push_str(tag);
    }
    if let Some(digest) = image.digest() {
        suffix.push('@');
        suffix.push_str(&digest.to_string());
    }
    suffix
}

fn tag_not_latest(image: &ImageRef) -> Option<Outcome> {
    if !image.is_latest() {
        return None;
    }
    let message = if image.tag().is_none() {
        "no tag means \"latest\", which moves under you"
    } else {
        "tag \"latest\" is mutable: what runs can change without a deploy"
    };
    outcome(
        message,
        format!("pin a version tag or a digest ({}@sha256:…)", image.name()),
    )
}

/// The pull policy Kubernetes applies when none is written: `Always` for latest/untagged, else `IfNotPresent`.
pub(super) fn effective_pull_policy<'a>(image: &ImageRef, written: Option<&'a str>) -> &'a str {
    match written {
        Some(policy) => policy,
        None if image.is_latest() => "Always",
        None => "IfNotPresent",
    }
}

/// `field` is how the manifest spells it: `imagePullPolicy` (containers) or `pullPolicy` (image volumes).
fn pull_policy(image: &ImageRef, written: Option<&str>, field: &str) -> Option<Outcome> {
    match effective_pull_policy(image, written) {
        "Never" => outcome(
            format!(
                "{field} Never runs whatever the node has cached; it cannot be verified (and from Kubernetes 1.35 a private image cached with other credentials does not start)"
            ),
            "use IfNotPresent with a pinned tag, or Always",
        ),
        "IfNotPresent" if image.is_latest() => outcome(
            "IfNotPresent with a mutable tag lets nodes run stale copies",
            format!("pin a version tag or digest, or set {field}: Always"),
        ),
        _ => None,
    }
}
