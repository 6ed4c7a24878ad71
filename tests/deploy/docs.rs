//! docs/install.md as a user follows it: the overlay of step 2a, written where the step says (a directory
//! in the root of the checkout), renders with `kubectl kustomize` with the image it names; and the
//! uninstall sequence deletes the webhook configuration first, then the overlay — which names that
//! configuration again, so every delete carries `--ignore-not-found` (without it the second exits 1).

use std::path::PathBuf;

use crate::render::{Rendered, kustomize, repo};

fn install_md() -> String {
    std::fs::read_to_string(repo().join("docs/install.md")).expect("docs/install.md")
}

/// The text of `name`'s section, from its `## ` heading to the next.
fn section<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text
        .find(&format!("\n## {name}"))
        .unwrap_or_else(|| panic!("docs/install.md has a section {name:?}"));
    let rest = &text[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    &rest[..end]
}

/// The fenced code blocks of section `name`, with their language.
fn blocks(text: &str, name: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut lines = section(text, name).lines();
    while let Some(line) = lines.next() {
        let Some(language) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.trim_start().starts_with("```"))
            .map(|l| l.get(indent..).unwrap_or(l.trim_start()))
            .collect();
        found.push((language.to_owned(), body.join("\n")));
    }
    found
}

/// A directory in the checkout's root, as step 2a puts `pullgate-local/`; removed when dropped.
struct LocalOverlay(PathBuf);

impl Drop for LocalOverlay {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Step 2a's overlay, rendered from where the step puts it.
fn render_documented_overlay() -> Rendered {
    let text = install_md();
    let (_, overlay) = blocks(&text, "2a. With cert-manager")
        .into_iter()
        .find(|(language, body)| language == "yaml" && body.contains("kind: Kustomization"))
        .expect("step 2a shows its kustomization.yaml");
    // One directory per call: the tests of this binary run at once in one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("pullgate-local-test-{}-{call}", std::process::id());
    let dir = LocalOverlay(repo().join(name));
    std::fs::create_dir_all(&dir.0).expect("overlay directory");
    std::fs::write(dir.0.join("kustomization.yaml"), &overlay).expect("kustomization.yaml");
    Rendered::parse("docs/install.md step 2a", &kustomize(&dir.0))
}

#[test]
fn the_documented_overlay_renders_from_the_root_of_the_checkout() {
    let rendered = render_documented_overlay();
    let images: Vec<&str> = rendered
        .objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|o| {
            o["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(|c| c["image"].as_str())
        .collect();
    assert_eq!(images, ["registry.mycorp.example/platform/pullgate:0.1.0"]);
    assert!(
        rendered.objects.iter().any(|o| o["kind"] == "Certificate"),
        "the cert-manager overlay"
    );
}

#[test]
fn the_documented_uninstall_removes_the_webhook_first_and_tolerates_it_gone() {
    let text = install_md();
    let (_, commands) = blocks(&text, "Uninstall")
        .into_iter()
        .find(|(language, _)| language == "sh")
        .expect("an uninstall block");
    let deletes: Vec<&str> = commands
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| l.starts_with("kubectl delete"))
        .collect();
    assert_eq!(
        deletes,
        [
            "kubectl delete validatingwebhookconfiguration pullgate --ignore-not-found",
            "kubectl delete -k pullgate-local --ignore-not-found",
        ]
    );
    // Why the flag is needed: the overlay deleted second names the configuration deleted first.
    let rendered = render_documented_overlay();
    assert!(
        rendered
            .objects
            .iter()
            .any(|o| o["kind"] == "ValidatingWebhookConfiguration"
                && o["metadata"]["name"] == "pullgate"),
        "the overlay holds the webhook configuration"
    );
    let helm = section(&text, "Uninstall")
        .split("With Helm: ")
        .nth(1)
        .and_then(|rest| rest.split('\n').next())
        .expect("the Helm uninstall");
    assert!(
        helm.contains("kubectl delete validatingwebhookconfiguration pullgate --ignore-not-found"),
        "{helm}"
    );
}
