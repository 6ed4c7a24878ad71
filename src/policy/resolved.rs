//! What the registries said about a pod's images (plain data, gathered before `evaluate`), and the
//! registry rules that turn it into findings: `image-exists`, `platform-supported`, `pull-secret-valid`,
//! `registry-reachable`, `registry-tls`, `rate-limited` and `image-size`. Wording follows the
//! troubleshooting guide.

use super::RuleId;
use super::quantity::{ByteQuantity, human};
use super::rules::Outcome;
use crate::facts::{
    AuthAttempt, ContainerFacts, CredentialOrigin, FailureClass, ImageStatus, Missing,
    ResolveError, Resolved, SecretProblem, SecretProblemKind, seconds,
};
use crate::image::ImageRef;
use crate::platform::{Platform, PlatformMatch, PodPlatforms};

/// The registry rule `id` for one container.
pub(super) fn check(
    id: RuleId,
    container: &ContainerFacts,
    namespace: &str,
    resolved: &Resolved,
) -> Option<Outcome> {
    let image = container.image.as_ref().ok()?;
    let status = resolved.images.get(&container.spec.image_path)?;
    match (id, status) {
        (
            RuleId::ImageExists,
            ImageStatus::NotFound {
                missing,
                suggestions,
            },
        ) => Some(not_found(image, *missing, suggestions)),
        (
            RuleId::PlatformSupported,
            ImageStatus::Found {
                platforms: Some(Ok(m)),
                ..
            },
        ) => {
            let outcome = platform(m, resolved.pod_platforms.as_ref())?;
            Some(if container.spec.image_path.contains(".volumes[") {
                volume_platform(outcome)
            } else {
                outcome
            })
        }
        (
            RuleId::PullSecretValid,
            ImageStatus::AuthFailed {
                attempts,
                problems,
                anonymous,
                api_unavailable,
                unverifiable,
            },
        ) => {
            let outcome = auth_failed(
                image,
                namespace,
                attempts,
                problems,
                anonymous.as_ref(),
                *api_unavailable,
            );
            Some(match unverifiable {
                // The nodes may pull it with credentials pullgate could not get: a warning only.
                Some(why) => Outcome::tentative(
                    format!("not verified: {why} ({})", outcome.message),
                    "give pullgate the credential provider the nodes use (settings credentialProviders), or an imagePullSecret".into(),
                ),
                None => outcome,
            })
        }
        (
            RuleId::PullSecretValid,
            ImageStatus::Found {
                secret_problems, ..
            },
        ) => {
            let first = secret_problems.first()?;
            Some(Outcome::tentative(
                format!("{first}; the image pulls without it"),
                "fix or remove the reference to the secret".into(),
            ))
        }
        (RuleId::PullSecretValid, ImageStatus::Failed(_) | ImageStatus::TimedOut(_)) => {
            // The registry could not be asked; what the API said about the pod's secrets still stands.
            let problems = resolved
                .unverified_secret_problems
                .get(&container.spec.image_path)?;
            let first = problems.first()?;
            let more = match problems.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            Some(Outcome::tentative(
                format!(
                    "{first}{more}; {} could not be asked whether the pull needs it",
                    image.registry()
                ),
                "fix or remove the reference to the secret".into(),
            ))
        }
        (RuleId::PullSecretValid, ImageStatus::CredentialsUnbuildable(problem)) => {
            Some(Outcome::new(
                format!(
                    "{problem}: kubelet cannot build the pod's pull credentials, so no image of this pod pulls (the registry is never asked)"
                ),
                format!(
                    "fix the secret, or remove it from imagePullSecrets: {} --dry-run=client -o yaml | kubectl apply -f -",
                    create_secret(&problem.secret, image.registry(), namespace)
                ),
            ))
        }
        (rule, ImageStatus::Failed(error)) if error.class() == failure_class(rule)? => {
            Some(failed(image, error))
        }
        (
            RuleId::RegistryReachable,
            ImageStatus::Found {
                platforms: Some(Err(error)),
                ..
            },
        ) => Some(Outcome::new(
            format!(
                "could not read the image's platforms from {}: {error}",
                image.registry()
            ),
            "check the network path from the nodes to the registry".into(),
        )),
        (RuleId::RateLimited, status)
            if !matches!(status, ImageStatus::Failed(ResolveError::RateLimited(_))) =>
        {
            let budget = resolved.low_budgets.get(image.registry())?;
            let limit = budget
                .limit
                .map_or_else(String::new, |limit| format!(" of {limit}"));
            let window = budget
                .window_seconds
                .map_or_else(String::new, |w| format!(" per {} h", w / 3600));
            Some(Outcome::tentative(
                format!(
                    "{} pull budget is low: {}{limit}{window} left",
                    image.registry(),
                    budget.remaining
                ),
                "authenticate pulls with imagePullSecrets, use a pull-through mirror, or copy the image to your own registry".into(),
            ))
        }
        (RuleId::RegistryReachable, ImageStatus::TimedOut(budget)) => Some(Outcome::new(
            format!(
                "could not verify: {} did not answer within {}",
                image.registry(),
                seconds(*budget)
            ),
            "check DNS, firewall and proxy between the nodes and the registry".into(),
        )),
        _ => None,
    }
}

/// `image-size`: what a node of some platform the pod may land on would pull is larger than `max`. The
/// platforms over the limit are named, largest first, with their sizes.
pub(super) fn image_size(
    container: &ContainerFacts,
    resolved: &Resolved,
    max: &ByteQuantity,
) -> Option<Outcome> {
    let ImageStatus::Found {
        sizes: Some(sizes), ..
    } = resolved.images.get(&container.spec.image_path)?
    else {
        return None;
    };
    let sizes = match sizes {
        Ok(sizes) => sizes,
        // The image was found; only weighing it failed: never more than a warning.
        Err(error) => {
            let registry = container.image.as_ref().ok()?.registry().to_owned();
            return Some(Outcome::tentative(
                format!("could not read the image's size from {registry}: {error}"),
                format!("check what {registry} serves for the image's platform manifests"),
            ));
        }
    };
    let mut over: Vec<_> = sizes.iter().filter(|s| s.bytes > max.bytes()).collect();
    over.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.platform.cmp(&b.platform))
    });
    over.first()?;
    let mut groups: Vec<(u64, Vec<String>)> = Vec::new();
    for size in &over {
        match groups.last_mut() {
            Some((bytes, platforms)) if *bytes == size.bytes => {
                platforms.push(size.platform.to_string())
            }
            _ => groups.push((size.bytes, vec![size.platform.to_string()])),
        }
    }
    let listed: Vec<String> = groups
        .iter()
        .take(LISTED)
        .map(|(bytes, platforms)| format!("{} for {}", human(*bytes), platforms.join(" and ")))
        .collect();
    Some(Outcome::new(
        format!(
            "the image is {} compressed, over the {max} limit: may hit no space left on device",
            listed.join(", ")
        ),
        "smaller base image or multi-stage build; node disk: imageGCHighThresholdPercent, ephemeral-storage".into(),
    ))
}

/// The rule that reports a failure class other than not-found and auth.
fn failure_class(rule: RuleId) -> Option<FailureClass> {
    match rule {
        RuleId::RegistryReachable => Some(FailureClass::Unreachable),
        RuleId::RegistryTls => Some(FailureClass::Tls),
        RuleId::RateLimited => Some(FailureClass::RateLimited),
        _ => None,
    }
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn either(tags: &[String]) -> String {
    let quoted: Vec<String> = tags.iter().map(|t| format!("{t:?}")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn not_found(image: &ImageRef, missing: Missing, suggestions: &[String]) -> Outcome {
    let repository = image.name();
    match (missing, image.digest(), image.effective_tag()) {
        (Missing::Repository, _, _) => Outcome::new(
            format!("repository {repository} not found"),
            "check the image name and registry".into(),
        ),
        (Missing::Manifest, Some(digest), _) => Outcome::new(
            format!("digest {digest} not found in {repository}"),
            "check the digest, or push the image".into(),
        ),
        (Missing::Manifest, None, tag) => {
            let mut message = format!(
                "tag {:?} not found in {repository}",
                tag.unwrap_or("latest")
            );
            if !suggestions.is_empty() {
                message.push_str(&format!(" — did you mean {}?", either(suggestions)));
            }
            Outcome::new(message, "check the tag, or push it".into())
        }
    }
}

/// Platforms as a message lists them: at most [`LISTED`], then how many more.
fn list(platforms: &[Platform]) -> String {
    let mut text = platforms
        .iter()
        .take(LISTED)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if platforms.len() > LISTED {
        text.push_str(&format!(
            " … and {} more",
            thousands(platforms.len() - LISTED)
        ));
    }
    text
}

/// Most platforms named in a message.
const LISTED: usize = 8;

/// `99998` → `99,998`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn platform(found: &PlatformMatch, pod: Option<&PodPlatforms>) -> Option<Outcome> {
    let constrained = pod.is_some_and(|p| p.constrained);
    match found {
        PlatformMatch::All => None,
        PlatformMatch::None { wanted, offered } => Some(Outcome::new(
            format!(
                "image has no variant for {} (it offers {}): the container would fail with exec format error",
                list(wanted),
                if offered.is_empty() {
                    "no platform".to_owned()
                } else {
                    list(offered)
                }
            ),
            if constrained {
                "use a multi-arch image, build for that platform, or fix the kubernetes.io/arch nodeSelector/affinity".into()
            } else {
                "use a multi-arch image, or add nodeSelector kubernetes.io/arch for a platform it has".into()
            },
        )),
        PlatformMatch::Some { missing } => {
            let arches: Vec<&str> = missing.iter().map(|p| p.architecture.as_str()).collect();
            // Only some nodes are a problem: the scheduler may still pick a good one, so warn.
            Some(Outcome::tentative(
                format!(
                    "may be scheduled on {} nodes where the image has no {} variant",
                    arches.join("/"),
                    arches.join("/")
                ),
                "add nodeSelector kubernetes.io/arch for a platform it has, or build a multi-arch image".into(),
            ))
        }
    }
}

/// An image volume's content is mounted, never executed: a single-platform image of another
/// architecture still pulls and mounts (containerd checks the platform only of an index's entries), so
/// a platform mismatch is a warning — pullgate does not tell here whether the image is an index.
fn volume_platform(outcome: Outcome) -> Outcome {
    if !outcome.definitive {
        return outcome;
    }
    let message = outcome
        .message
        .replace(": the container would fail with exec format error", "");
    Outcome::tentative(
        format!(
            "{message}: an index without it fails to pull; a single-platform image still mounts (its files are not executed)"
        ),
        "use an image built for the node's platform, or a multi-arch image".into(),
    )
}

/// The `kubectl create secret` line for this registry.
fn create_secret(name: &str, registry: &str, namespace: &str) -> String {
    format!(
        "kubectl create secret docker-registry {name} --docker-server={registry} --docker-username=USER --docker-password=PASS -n {namespace}"
    )
}

/// The `kubectl patch` line that attaches `regcred` to a ServiceAccount.
fn patch_service_account(account: &str, namespace: &str) -> String {
    format!(
        "kubectl patch serviceaccount {account} -n {namespace} -p '{{\"imagePullSecrets\":[{{\"name\":\"regcred\"}}]}}'"
    )
}

fn auth_failed(
    image: &ImageRef,
    namespace: &str,
    attempts: &[AuthAttempt],
    problems: &[SecretProblem],
    anonymous: Option<&ResolveError>,
    api_unavailable: bool,
) -> Outcome {
    let registry = image.registry();
    let repository = image.repository();
    if let Some(denied) = attempts.iter().find(|a| a.error == ResolveError::Denied) {
        return Outcome::new(
            format!(
                "{} is valid but has no pull access to {repository} on {registry} (403 or insufficient_scope)",
                denied.origin
            ),
            format!("grant that account pull access to {repository}, or use a secret that has it"),
        );
    }
    if let Some(first) = attempts.first() {
        let secret = match &first.origin {
            CredentialOrigin::PodSecret { secret }
            | CredentialOrigin::ServiceAccountSecret { secret, .. } => secret.clone(),
            CredentialOrigin::Node { .. } | CredentialOrigin::Provider { .. } => {
                "regcred".to_owned()
            }
        };
        let tried: Vec<String> = attempts.iter().map(|a| a.origin.to_string()).collect();
        let fix = match &first.origin {
            CredentialOrigin::Provider { name } => format!(
                "check the cloud identity credential provider {name:?} uses: it must be allowed to pull {repository}; or add an imagePullSecret"
            ),
            _ => format!(
                "update the secret: {} --dry-run=client -o yaml | kubectl apply -f -",
                create_secret(&secret, registry, namespace)
            ),
        };
        return Outcome::new(
            format!(
                "credentials from {} rejected by {registry} (401)",
                tried.join(", ")
            ),
            fix,
        );
    }
    if api_unavailable {
        return Outcome::tentative(
            format!(
                "{registry} requires credentials (401) and pull secrets could not be read (no Kubernetes API)"
            ),
            "give pullgate a Kubernetes API (in-cluster or --kubeconfig) to verify pull secrets"
                .into(),
        );
    }
    let anonymous = anonymous.map_or_else(String::new, |e| format!(" ({e})"));
    // A namespace's `default` ServiceAccount that does not exist simply lends no secrets.
    let relevant = problems
        .iter()
        .find(|p| !p.is_missing_default_service_account());
    match relevant {
        Some(problem) if problem.secret.is_empty() => {
            let account = problem.service_account.as_deref().unwrap_or("default");
            Outcome::new(
                format!("{problem}; {registry} requires credentials{anonymous}"),
                format!(
                    "kubectl create serviceaccount {account} -n {namespace}, then {}",
                    patch_service_account(account, namespace)
                ),
            )
        }
        Some(problem) => {
            let fix = match &problem.kind {
                SecretProblemKind::NotFound => format!(
                    "create it: {}",
                    create_secret(&problem.secret, registry, namespace)
                ),
                SecretProblemKind::NoEntryForRegistry { .. } => format!(
                    "add an entry for {registry} to it, or create one: {}",
                    create_secret(
                        &format!("{}-{}", problem.secret, "registry"),
                        registry,
                        namespace
                    )
                ),
                SecretProblemKind::ApiUnavailable { .. } => {
                    "give pullgate a Kubernetes API to verify pull secrets".into()
                }
                _ => format!(
                    "recreate it: {} --dry-run=client -o yaml | kubectl apply -f -",
                    create_secret(&problem.secret, registry, namespace)
                ),
            };
            Outcome::new(
                format!("{problem}; {registry} requires credentials{anonymous}"),
                fix,
            )
        }
        None => Outcome::new(
            format!(
                "{registry} requires credentials{anonymous} and the pod has no pull secret for it"
            ),
            format!(
                "{}, then add it to imagePullSecrets or: {}",
                create_secret("regcred", registry, namespace),
                patch_service_account("default", namespace)
            ),
        ),
    }
}

fn failed(image: &ImageRef, error: &ResolveError) -> Outcome {
    let registry = image.registry();
    if let ResolveError::RequestBudgetSpent { .. } = error {
        return Outcome::tentative(
            format!("not checked: {registry}: {error}"),
            "raise --max-requests-per-registry, or audit fewer namespaces at a time".into(),
        );
    }
    match error.class() {
        FailureClass::Tls => Outcome::new(
            format!("{error} ({registry})"),
            format!(
                "trust the registry's CA on the nodes (containerd certs.d/{registry}/hosts.toml ca = ...) and in pullgate's registries config; skipping verification is high risk"
            ),
        ),
        FailureClass::RateLimited => Outcome::new(
            format!("{registry} {error}"),
            "authenticate pulls with imagePullSecrets, use a pull-through mirror, or copy the image to your own registry".into(),
        ),
        _ => Outcome::new(
            format!("could not verify: {registry}: {error}"),
            "check DNS, firewall and proxy between the nodes and the registry".into(),
        ),
    }
}
