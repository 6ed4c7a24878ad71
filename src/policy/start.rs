//! The start rules: what fails after a clean pull, decided by the image config of what the node pulls
//! and the pod spec — `run-as-non-root` (kubelet, `CreateContainerConfigError`), `command-specified`
//! (the runtime, `CreateContainerError: no command specified`), `config-platform` (an index entry that
//! claims one platform for a config of another: `exec format error`) and `pod-os` (`spec.os.name`
//! against where the pod may be scheduled: `PodOSNotSupported`).
//!
//! Ported, with the version read:
//! - kubelet `verifyRunAsNonRoot` (`pkg/kubelet/kuberuntime/security_context_others.go` and
//!   `security_context_windows.go`, the v1.33–v1.35 tree: the uid range check and the case-insensitive
//!   `ContainerAdministrator`), `getImageUser` (`helpers.go`: neither uid nor name is uid 0) and
//!   `DetermineEffectiveSecurityContext` (`pkg/securitycontext/util.go`: [`RunAs::over`]);
//! - containerd `getUserFromImage` (v1.7.34 `pkg/cri/server/helpers.go`, identical in 2.x
//!   `internal/cri/server/images/image_status.go` and in CRI-O `server/image_status.go`);
//! - containerd `WithProcessArgs` (v1.7.34 `pkg/cri/opts/spec_opts.go`, identical in 2.x
//!   `internal/cri/opts/spec_opts.go`); kubelet passes `command: []` as unset.
//!
//! Each rule is a pure function of the container, the pod's facts and the registry's answer; the
//! tables in `start_tests.rs` are the upstream tables.

use super::rules::Outcome;
use crate::facts::{ContainerFacts, Facts, ImageConfig, ImageStatus, Resolved, StartView};
use crate::platform::Platform;
use crate::workload::{ContainerList, RunAs};

/// The largest uid kubelet accepts (`validation.IsValidUserID`: `0..=math.MaxInt32`).
const MAX_USER_ID: i64 = i32::MAX as i64;

/// The user Windows containers run as with administrator rights: kubelet's "root".
const WINDOWS_ROOT_USER: &str = "ContainerAdministrator";

/// What the container runtime reports of an image's user (CRI `ImageStatus`): a uid, or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ImageUser {
    pub uid: Option<i64>,
    pub username: String,
}

/// containerd's (and CRI-O's) `getUserFromImage`: `""` is neither; `user:group` keeps the user; a
/// base-10 number (`+` allowed, no spaces, within i64) is a uid, anything else a name.
pub(super) fn user_from_image(user: &str) -> ImageUser {
    if user.is_empty() {
        return ImageUser {
            uid: None,
            username: String::new(),
        };
    }
    let user = user.split(':').next().unwrap_or_default();
    match parse_go_int(user) {
        Some(uid) => ImageUser {
            uid: Some(uid),
            username: String::new(),
        },
        None => ImageUser {
            uid: None,
            username: user.to_owned(),
        },
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign and ASCII digits only.
fn parse_go_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// kubelet's `getImageUser`: the runtime's uid, else its name, else (neither) uid 0.
pub(super) fn kubelet_image_user(reported: ImageUser) -> ImageUser {
    match reported {
        ImageUser { uid: Some(uid), .. } => ImageUser {
            uid: Some(uid),
            username: String::new(),
        },
        ImageUser {
            uid: None,
            username,
        } if !username.is_empty() => ImageUser {
            uid: None,
            username,
        },
        ImageUser { .. } => ImageUser {
            uid: Some(0),
            username: String::new(),
        },
    }
}

/// Why kubelet's `verifyRunAsNonRoot` refuses to create the container (Linux nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NonRootRefusal {
    /// The effective `runAsUser` is 0.
    RunAsUserRoot,
    /// The image runs as uid 0 (numeric 0, or no user at all).
    ImageRoot,
    /// The image names its user, which kubelet cannot verify.
    NonNumeric(String),
    /// The image's uid is outside `0..=2147483647`.
    InvalidUid(i64),
    /// Windows: the effective `runAsUserName` is `ContainerAdministrator`.
    WindowsUserNameAdmin(String),
    /// Windows: the image's user is `ContainerAdministrator`.
    WindowsImageAdmin(String),
}

impl NonRootRefusal {
    /// kubelet's message, without its `(pod: …, container: …)` suffix.
    pub fn kubelet_message(&self) -> String {
        match self {
            Self::RunAsUserRoot => "container's runAsUser breaks non-root policy".into(),
            Self::ImageRoot => "container has runAsNonRoot and image will run as root".into(),
            Self::NonNumeric(name) => format!(
                "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root"
            ),
            Self::InvalidUid(uid) => format!(
                "container has runAsNonRoot and image has an invalid user id ({uid}). (Must be 1-({MAX_USER_ID})): must be between 0 and {MAX_USER_ID}, inclusive"
            ),
            Self::WindowsUserNameAdmin(name) => format!(
                "container's runAsUserName ({name}) which will be regarded as root identity and will break non-root policy"
            ),
            Self::WindowsImageAdmin(name) => format!(
                "container's runAsUser ({name}) which will be regarded as root identity and will break non-root policy"
            ),
        }
    }
}

/// kubelet's `verifyRunAsNonRoot` on Linux, on the effective security context and the image user as
/// kubelet reads it ([`kubelet_image_user`]).
pub(super) fn verify_run_as_non_root(
    effective: &RunAs,
    image: &ImageUser,
) -> Result<(), NonRootRefusal> {
    if effective.non_root != Some(true) {
        return Ok(());
    }
    if let Some(user) = effective.user {
        return match user {
            0 => Err(NonRootRefusal::RunAsUserRoot),
            _ => Ok(()),
        };
    }
    match image {
        ImageUser {
            uid: None,
            username,
        } if !username.is_empty() => Err(NonRootRefusal::NonNumeric(username.clone())),
        ImageUser { uid: Some(0), .. } => Err(NonRootRefusal::ImageRoot),
        ImageUser { uid: Some(uid), .. } if !(0..=MAX_USER_ID).contains(uid) => {
            Err(NonRootRefusal::InvalidUid(*uid))
        }
        _ => Ok(()),
    }
}

/// kubelet's `verifyRunAsNonRoot` on Windows: `runAsUser` is ignored; `runAsUserName` (else the
/// image's user) must not be `ContainerAdministrator` (any case).
pub(super) fn verify_run_as_non_root_windows(
    effective: &RunAs,
    image_username: &str,
) -> Result<(), NonRootRefusal> {
    if effective.non_root != Some(true) {
        return Ok(());
    }
    let is_admin = |name: &str| name.to_lowercase() == WINDOWS_ROOT_USER.to_lowercase();
    if let Some(name) = &effective.windows_user_name {
        return match is_admin(name) {
            true => Err(NonRootRefusal::WindowsUserNameAdmin(name.clone())),
            false => Ok(()),
        };
    }
    match is_admin(image_username) {
        true => Err(NonRootRefusal::WindowsImageAdmin(image_username.to_owned())),
        false => Ok(()),
    }
}

/// The process a runtime starts, as containerd's CRI `WithProcessArgs` merges the container's
/// `command`/`args` (as kubelet passes them: empty is unset) with the image's `Entrypoint`/`Cmd`:
/// a command replaces the Entrypoint and drops the Cmd; args alone replace the Cmd; an Entrypoint of
/// exactly `[""]` counts as none. Empty: the runtime refuses ("no command specified"). The rule asks
/// [`nothing_to_run`], which the tables check against this.
#[cfg(test)]
pub(super) fn process_args(
    command: Option<&[String]>,
    args: Option<&[String]>,
    image: &ImageConfig,
) -> Vec<String> {
    let command = command.unwrap_or_default();
    let args = args.unwrap_or_default();
    if !command.is_empty() {
        return command.iter().chain(args).cloned().collect();
    }
    let args = if args.is_empty() {
        &image.cmd[..]
    } else {
        args
    };
    let entrypoint = match image.entrypoint.as_slice() {
        [only] if only.is_empty() => &[][..],
        entrypoint => entrypoint,
    };
    entrypoint.iter().chain(args).cloned().collect()
}

/// Whether [`process_args`] comes to nothing (the runtime's "no command specified"), without building it.
pub(super) fn nothing_to_run(
    command: Option<&[String]>,
    args: Option<&[String]>,
    image: &ImageConfig,
) -> bool {
    let entrypoint = match image.entrypoint.as_slice() {
        [only] if only.is_empty() => &[][..],
        entrypoint => entrypoint,
    };
    command.is_none_or(<[String]>::is_empty)
        && args.is_none_or(<[String]>::is_empty)
        && entrypoint.is_empty()
        && image.cmd.is_empty()
}

/// Whether `run-as-non-root` needs the image config for this container: the effective
/// `runAsNonRoot` is true and nothing in the pod spec decides the user already (`runAsUser` on Linux,
/// `runAsUserName` on Windows).
pub fn needs_user(container: &ContainerFacts, facts: &Facts) -> bool {
    if container.spec.list == ContainerList::ImageVolumes {
        return false;
    }
    // Most pods do not ask for it: said before anything is copied.
    if container.spec.run_as.non_root.or(facts.pod_run_as.non_root) != Some(true) {
        return false;
    }
    let effective = container.spec.run_as.over(&facts.pod_run_as);
    effective.non_root == Some(true)
        && match facts.pod_os.as_deref() {
            Some("windows") => effective.windows_user_name.is_none(),
            _ => effective.user.is_none(),
        }
}

/// Whether `command-specified` needs the image config: the container gives no command.
pub fn needs_command(container: &ContainerFacts) -> bool {
    starts_a_process(container) && container.spec.command.as_ref().is_none_or(Vec::is_empty)
}

/// Whether the image is run (a container), not only mounted (an image volume).
pub fn starts_a_process(container: &ContainerFacts) -> bool {
    container.spec.list != ContainerList::ImageVolumes
}

/// The start rule `id` for one container.
pub(super) fn check(
    id: super::RuleId,
    container: &ContainerFacts,
    facts: &Facts,
    resolved: &Resolved,
) -> Option<Outcome> {
    use super::RuleId;
    if container.image.is_err() {
        return None;
    }
    match id {
        RuleId::RunAsNonRoot => run_as_non_root(container, facts, resolved),
        RuleId::CommandSpecified => command_specified(container, resolved),
        RuleId::ConfigPlatform => config_platform(container, resolved),
        RuleId::PodOs => pod_os(container, facts, resolved),
        RuleId::WindowsBuild => super::windows_build::check(container, resolved),
        _ => None,
    }
}

/// What a node of each candidate would start, when the registry was asked for it.
fn starts<'a>(
    container: &ContainerFacts,
    resolved: &'a Resolved,
) -> Option<impl Iterator<Item = StartView<'a>>> {
    let candidates = resolved
        .pod_platforms
        .as_ref()
        .map_or(&[][..], |p| &p.candidates[..]);
    match resolved.images.get(&container.spec.image_path)? {
        ImageStatus::Found {
            configs: Some(Ok(starts)),
            ..
        } => Some(starts.each(candidates)),
        _ => None,
    }
}

/// Which of `starts` fail, and what the outcome says: definitive when every candidate fails, a warning
/// naming the platforms when only some do.
fn per_platform<'a>(
    starts: impl Iterator<Item = StartView<'a>>,
    fails: impl Fn(&StartView) -> Option<(String, String)>,
) -> Option<Outcome> {
    let mut total = 0;
    let mut failing: Vec<(&Platform, (String, String))> = Vec::new();
    for start in starts {
        total += 1;
        if let Some(said) = fails(&start) {
            failing.push((start.node, said));
        }
    }
    let (message, fix) = failing.first()?.1.clone();
    if failing.len() == total {
        return Some(Outcome::new(message, fix));
    }
    // Only some nodes are a problem: the scheduler may still pick a good one, so warn.
    let platforms: Vec<String> = failing.iter().map(|(p, _)| p.to_string()).collect();
    Some(Outcome::tentative(
        format!("on {} nodes: {message}", platforms.join(", ")),
        fix,
    ))
}

/// `run-as-non-root`: kubelet refuses to create the container (`CreateContainerConfigError`).
pub(super) fn run_as_non_root(
    container: &ContainerFacts,
    facts: &Facts,
    resolved: &Resolved,
) -> Option<Outcome> {
    if container.spec.list == ContainerList::ImageVolumes
        || container.spec.run_as.non_root.or(facts.pod_run_as.non_root) != Some(true)
    {
        return None;
    }
    let effective = container.spec.run_as.over(&facts.pod_run_as);
    // A root runAsUser fails whatever the image (Linux nodes): no registry answer needed.
    let linux_only = facts.pod_os.as_deref() != Some("windows");
    if effective.user == Some(0) && linux_only {
        return Some(refusal_outcome(&NonRootRefusal::RunAsUserRoot, None));
    }
    let starts = starts(container, resolved)?;
    per_platform(starts, |start| {
        let refusal = if start.node.os == "windows" {
            let reported = user_from_image(&start.config.user);
            verify_run_as_non_root_windows(&effective, &reported.username).err()?
        } else {
            let user = kubelet_image_user(user_from_image(&start.config.user));
            verify_run_as_non_root(&effective, &user).err()?
        };
        let outcome = refusal_outcome(&refusal, Some(&start.config.user));
        Some((outcome.message, outcome.fix))
    })
}

/// The finding for a kubelet refusal: kubelet's words, then the fix that is known to work.
fn refusal_outcome(refusal: &NonRootRefusal, image_user: Option<&str>) -> Outcome {
    let cause = format!(
        "{} (kubelet: CreateContainerConfigError)",
        refusal.kubelet_message()
    );
    let fix = match refusal {
        NonRootRefusal::RunAsUserRoot => {
            "set runAsUser to a non-zero uid, or drop runAsNonRoot".to_owned()
        }
        NonRootRefusal::ImageRoot => match image_user {
            Some("") => "the image sets no USER: set securityContext.runAsUser to a non-zero uid, or build the image with a numeric non-root USER".to_owned(),
            _ => "set securityContext.runAsUser to a non-zero uid, or build the image with a numeric non-root USER".to_owned(),
        },
        NonRootRefusal::NonNumeric(name) => format!(
            "set securityContext.runAsUser to the uid of {name:?} (kubelet cannot read the image's /etc/passwd), or build the image with USER as a number"
        ),
        NonRootRefusal::InvalidUid(_) => {
            "set securityContext.runAsUser to a uid from 1 to 2147483647, or fix the image's USER"
                .to_owned()
        }
        NonRootRefusal::WindowsUserNameAdmin(_) => {
            "set securityContext.windowsOptions.runAsUserName to a non-administrator user, e.g. ContainerUser".to_owned()
        }
        NonRootRefusal::WindowsImageAdmin(_) => {
            "set securityContext.windowsOptions.runAsUserName: ContainerUser, or build the image with USER ContainerUser".to_owned()
        }
    };
    Outcome::new(cause, fix)
}

/// `command-specified`: the runtime refuses a container with nothing to run (`CreateContainerError`).
pub(super) fn command_specified(
    container: &ContainerFacts,
    resolved: &Resolved,
) -> Option<Outcome> {
    if !needs_command(container) {
        return None;
    }
    let starts = starts(container, resolved)?;
    let spec = &container.spec;
    per_platform(starts, |start| {
        let nothing = nothing_to_run(spec.command.as_deref(), spec.args.as_deref(), start.config);
        nothing.then(|| {
            (
                "the image has no ENTRYPOINT or CMD and the container gives no command: the runtime refuses to create it (CreateContainerError: no command specified)".to_owned(),
                "add command: [...] to the container, or build the image with an ENTRYPOINT or CMD".to_owned(),
            )
        })
    })
}

/// `config-platform`: the index entry a node selects claims one platform, but its config (what the
/// binaries are) says one that does not run there — a mis-built multi-arch image that pulls cleanly
/// and dies with `exec format error`.
pub(super) fn config_platform(container: &ContainerFacts, resolved: &Resolved) -> Option<Outcome> {
    let starts = starts(container, resolved)?;
    per_platform(starts.filter(|s| s.entry.is_some()), |start| {
        let (entry, _) = start.entry?;
        let built = start.config.platform.as_ref()?;
        if built.runs_on(start.node) {
            return None;
        }
        Some((
            format!(
                "the image index's {entry} entry points to an image built for {built}: it pulls on {} nodes and fails with exec format error",
                start.node
            ),
            "pin a digest of a correctly built image, or rebuild the multi-arch image (each entry's config must name its platform)".to_owned(),
        ))
    })
}

/// `pod-os`: kubelet admits a pod only on a node of the OS it declares (`PodOSNotSupported`). Said once
/// per pod, on its first container.
pub(super) fn pod_os(
    container: &ContainerFacts,
    facts: &Facts,
    resolved: &Resolved,
) -> Option<Outcome> {
    let os = facts.pod_os.as_deref()?;
    let first = facts
        .containers
        .iter()
        .find(|c| c.spec.list != ContainerList::ImageVolumes)?;
    if first.spec.image_path != container.spec.image_path {
        return None;
    }
    let rejected = "kubelet rejects it there (PodOSNotSupported: Failed to admit pod as the OS field doesn't match node OS)";
    match facts.pod_os_allowed {
        Some(false) => Some(Outcome::new(
            format!(
                "spec.os.name is {os} but its nodeSelector/affinity allows only nodes of another OS: {rejected}"
            ),
            format!(
                "make spec.os.name and the kubernetes.io/os node selector agree (kubernetes.io/os: {os})"
            ),
        )),
        Some(true) => None,
        None => {
            let other = &resolved.pod_platforms.as_ref()?.other_os;
            let oses: std::collections::BTreeSet<&str> =
                other.iter().map(|p| p.os.as_str()).collect();
            if oses.is_empty() {
                return None;
            }
            let oses: Vec<&str> = oses.into_iter().collect();
            Some(Outcome::tentative(
                format!(
                    "spec.os.name is {os} but the pod may be scheduled on {} nodes: {rejected}",
                    oses.join("/")
                ),
                format!("add nodeSelector kubernetes.io/os: {os}"),
            ))
        }
    }
}

#[cfg(test)]
#[path = "start_tests.rs"]
mod tests;
