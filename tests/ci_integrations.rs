//! The CI integrations, run as their CI systems would run them, on `tests/fixtures/ci` (a Deployment the
//! static rules pass, one they deny for `latest`), offline, with the pullgate this build made on `PATH`:
//!
//! - `action.yml` (GitHub Actions, composite): each `run` step through `bash --noprofile --norc -eo
//!   pipefail`, with its `env:` expressions filled from the inputs and GitHub's variables — annotations on
//!   the denied line, the job failing, a SARIF file when asked, the upload step conditioned on it. The
//!   install step's script (`scripts/ci/install-pullgate.sh`) is run by `test.sh` after the tests (a
//!   `cargo install` would rebuild the binary the other tests are running).
//! - `.pre-commit-hooks.yaml`: the hook's `entry` with file names appended, as pre-commit calls it.
//! - `docs/ci/gitlab-ci.yml`: the job's `script` lines with its `variables`, as a GitLab runner runs
//!   them; the JUnit report it names.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).expect(path);
    serde_saphyr::from_str(&text).expect("YAML")
}

/// `PATH` with this build's pullgate first.
fn path_with_pullgate() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_pullgate"))
        .parent()
        .expect("bin dir");
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{rest}", bin.display())
}

/// `bash --noprofile --norc -eo pipefail -c SCRIPT` in the repository root, as GitHub's `shell: bash`
/// (and, with `-e`, a GitLab runner) runs a script.
fn bash(script: &str, env: &BTreeMap<String, String>) -> Output {
    Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .current_dir(root())
        .env("PATH", path_with_pullgate())
        .envs(env)
        .output()
        .expect("bash runs")
}

/// The value of a GitHub expression the action uses: `${{ inputs.NAME }}` or `${{ github.action_path }}`.
fn expression(text: &str, inputs: &BTreeMap<&str, String>) -> String {
    let Some(inner) = text
        .trim()
        .strip_prefix("${{")
        .and_then(|t| t.strip_suffix("}}"))
    else {
        return text.to_owned();
    };
    match inner.trim() {
        "github.action_path" => root().display().to_string(),
        "github.action_repository" => "example/pullgate".into(),
        name => {
            let input = name
                .strip_prefix("inputs.")
                .unwrap_or_else(|| panic!("unknown expression {text}"));
            inputs
                .get(input)
                .cloned()
                .unwrap_or_else(|| panic!("input {input} is not declared"))
        }
    }
}

/// Run the action's `run` steps in order with `given` inputs (the rest at their defaults), stopping at
/// the first that fails, as a job does. Returns each step's output.
fn run_action(given: &[(&str, &str)], temp: &Path) -> Vec<(String, Output)> {
    let action = yaml("action.yml");
    assert_eq!(action["runs"]["using"], "composite");
    let mut inputs: BTreeMap<&str, String> = BTreeMap::new();
    for (name, input) in action["inputs"].as_object().expect("inputs") {
        assert!(
            input["description"].as_str().is_some_and(|d| !d.is_empty()),
            "input {name} is described"
        );
        let default = input["default"]
            .as_str()
            .expect("every input has a default");
        inputs.insert(name.as_str(), default.to_owned());
    }
    for (name, value) in given {
        assert!(inputs.contains_key(name), "input {name} is declared");
        inputs.insert(name, (*value).to_owned());
    }
    let mut outputs = Vec::new();
    for step in action["runs"]["steps"].as_array().expect("steps") {
        let Some(script) = step["run"].as_str() else {
            continue;
        };
        assert_eq!(
            step["shell"], "bash",
            "composite run steps name their shell"
        );
        let mut env: BTreeMap<String, String> = step["env"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), expression(v.as_str().expect("text"), &inputs)))
            .collect();
        env.insert("RUNNER_TEMP".into(), temp.display().to_string());
        env.insert(
            "GITHUB_PATH".into(),
            temp.join("github_path").display().to_string(),
        );
        let name = step["name"].as_str().unwrap_or("").to_owned();
        let output = bash(script, &env);
        let failed = !output.status.success();
        outputs.push((name, output));
        if failed {
            break;
        }
    }
    outputs
}

/// The strings of a YAML list that must be there (a job's `script`).
fn strings<'a>(list: &'a Value, what: &str) -> Vec<&'a str> {
    list.as_array()
        .expect(what)
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_github_action_annotates_the_denied_line_fails_the_job_and_writes_sarif() {
    let temp = tempfile::tempdir().expect("tempdir");
    let sarif = temp.path().join("pullgate.sarif");
    let sarif_input = sarif.display().to_string();
    let steps = run_action(
        &[
            ("files", "tests/fixtures/ci/bad"),
            ("offline", "true"),
            ("install", "false"),
            ("sarif", &sarif_input),
        ],
        temp.path(),
    );
    let names: Vec<&str> = steps.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["Install pullgate", "pullgate check"]);
    let (_, install) = &steps[0];
    assert!(install.status.success(), "install: false installs nothing");
    let (_, check) = &steps[1];
    assert_eq!(check.status.code(), Some(1), "{}", text(&check.stderr));
    let stdout = text(&check.stdout);
    assert!(
        stdout.lines().any(|l| l
            .starts_with("::error file=tests/fixtures/ci/bad/web.yaml,line=17,")
            && l.contains("[tag-not-latest]")),
        "{stdout}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&sarif).expect("SARIF written"))
            .expect("SARIF is JSON");
    assert_eq!(report["version"], "2.1.0");
    let results = report["runs"][0]["results"].as_array().expect("results");
    assert!(
        results.iter().any(|r| r["ruleId"] == "tag-not-latest"),
        "{report}"
    );

    // The upload runs whenever a SARIF path was given, also after the check failed the job.
    let action = yaml("action.yml");
    let upload = action["runs"]["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["uses"].is_string()))
        .expect("an upload step");
    assert!(
        upload["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("github/codeql-action/upload-sarif@")),
        "{upload}"
    );
    assert_eq!(upload["if"], "${{ always() && inputs.sarif != '' }}");
    assert_eq!(upload["with"]["sarif_file"], "${{ inputs.sarif }}");
}

#[test]
fn the_github_action_passes_a_clean_tree() {
    let temp = tempfile::tempdir().expect("tempdir");
    let steps = run_action(
        &[
            ("files", "tests/fixtures/ci/good"),
            ("offline", "true"),
            ("install", "false"),
        ],
        temp.path(),
    );
    let (_, check) = steps.last().expect("steps ran");
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        !text(&check.stdout).contains("::error"),
        "{}",
        text(&check.stdout)
    );
}

/// The hook's command line with `files` appended, as pre-commit runs it.
fn run_hook(files: &[&str]) -> Output {
    let hooks = yaml(".pre-commit-hooks.yaml");
    let hook = hooks
        .as_array()
        .and_then(|hooks| hooks.iter().find(|h| h["id"] == "pullgate-check"))
        .expect("hook pullgate-check");
    assert_eq!(hook["language"], "rust", "pre-commit builds it with cargo");
    let entry: Vec<&str> = hook["entry"]
        .as_str()
        .expect("entry")
        .split_whitespace()
        .collect();
    let args: Vec<&str> = hook["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(entry[0], "pullgate");
    Command::new("pullgate")
        .args(&entry[1..])
        .args(args)
        .args(files)
        .current_dir(root())
        .env("PATH", path_with_pullgate())
        .output()
        .expect("pullgate runs")
}

#[test]
fn the_pre_commit_hook_fails_on_a_denied_file_and_passes_other_yaml_over() {
    // A commit that changes a manifest with a `latest` image, this repository's own settings schema
    // and its pre-commit hook file (not Kubernetes objects): only the manifest is judged.
    let denied = run_hook(&[
        "tests/fixtures/ci/bad/web.yaml",
        ".pre-commit-hooks.yaml",
        "deploy/settings.schema.json",
    ]);
    assert_eq!(denied.status.code(), Some(1), "{}", text(&denied.stderr));
    let stdout = text(&denied.stdout);
    assert!(
        stdout.contains("tests/fixtures/ci/bad/web.yaml:17: deny container \"web\""),
        "{stdout}"
    );
    assert!(!stdout.contains("input errors"), "{stdout}");

    let clean = run_hook(&["tests/fixtures/ci/good/web.yaml", ".pre-commit-hooks.yaml"]);
    assert!(clean.status.success(), "{}", text(&clean.stdout));
}

#[test]
fn the_gitlab_job_fails_on_denials_and_leaves_its_junit_report() {
    let pipeline = yaml("docs/ci/gitlab-ci.yml");
    let job = &pipeline["pullgate"];
    let report = job["artifacts"]["reports"]["junit"]
        .as_str()
        .expect("a JUnit report");
    assert_eq!(
        job["artifacts"]["when"], "always",
        "kept when the job fails"
    );
    let script: Vec<&str> = strings(&job["script"], "script");
    for (files, expected) in [
        ("tests/fixtures/ci/bad/", Some(1)),
        ("tests/fixtures/ci/good/", Some(0)),
    ] {
        let temp = tempfile::tempdir().expect("tempdir");
        let mut env: BTreeMap<String, String> = job["variables"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        env.insert("PULLGATE_FILES".into(), files.into());
        // Offline: CI here has no registry to ask (the runner sees the variable as any other).
        env.insert("PULLGATE_OFFLINE".into(), "true".into());
        // The report goes where the runner would collect it: the job's working directory.
        let workdir = temp.path().join("job");
        std::fs::create_dir(&workdir).expect("workdir");
        let lines: Vec<String> = std::iter::once(format!("cd {}", root().display()))
            .chain(
                script
                    .iter()
                    .map(|l| l.replace(report, &workdir.join(report).display().to_string())),
            )
            .collect();
        let output = bash(&lines.join("\n"), &env);
        assert_eq!(output.status.code(), expected, "{}", text(&output.stderr));
        let junit = std::fs::read_to_string(workdir.join(report)).expect("report written");
        assert!(junit.starts_with("<?xml"), "{junit}");
        assert!(junit.contains("<testsuites"), "{junit}");
        assert_eq!(
            junit.contains("<failure"),
            expected == Some(1),
            "{files}: {junit}"
        );
    }
    let install: Vec<&str> = strings(&job["before_script"], "before_script");
    assert!(
        install
            .iter()
            .any(|l| l.starts_with("cargo install --locked ")),
        "{install:?}"
    );
}

#[test]
fn readme_shows_each_integration_in_ten_lines_or_fewer() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let section = readme
        .split("\n### In CI pipelines")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has an \"In CI pipelines\" section");
    let blocks: Vec<&str> = section.split("```").skip(1).step_by(2).collect();
    for needle in ["uses: ", "repo: ", "reports:"] {
        let block = blocks
            .iter()
            .find(|b| b.contains(needle))
            .unwrap_or_else(|| panic!("a block with {needle:?}: {section}"));
        let lines = block
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count();
        assert!(lines <= 10, "{lines} lines: {block}");
    }
}
