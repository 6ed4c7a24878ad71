//! The disk cache: what survives a new process, what is never written, what a broken entry is.

use super::*;
use crate::facts::CredentialOrigin;

/// Counts calls; answers a fixed digest and platforms.
#[derive(Default)]
struct Counting {
    digests: AtomicUsize,
    manifests: AtomicUsize,
    configs: AtomicUsize,
}

impl ImageResolver for Counting {
    fn digest<'a>(
        &'a self,
        _: &'a ImageRef,
        _: Option<&'a Credential>,
        _: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ManifestDigest, ResolveError>> {
        self.digests.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(ManifestDigest(format!("sha256:{}", "a".repeat(64)))) })
    }

    fn manifest<'a>(
        &'a self,
        _: &'a ImageRef,
        _: Option<&'a Credential>,
        _: bool,
        _: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<Found, ResolveError>> {
        self.manifests.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Ok(Found {
                digest: ManifestDigest(format!("sha256:{}", "a".repeat(64))),
                platforms: Some(Ok(vec!["linux/arm64".parse().expect("platform")])),
                contents: None,
                config: None,
            })
        })
    }

    fn config<'a>(
        &'a self,
        _: &'a ImageRef,
        _: Option<&'a Credential>,
        _: &'a str,
        _: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ImageConfig, ResolveError>> {
        self.configs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Ok(ImageConfig {
                user: "1001".into(),
                ..ImageConfig::default()
            })
        })
    }

    fn head_first(&self, _: &str) -> bool {
        false
    }
}

fn credential(password: &str) -> Credential {
    Credential::new(
        "alice",
        password,
        CredentialOrigin::PodSecret { secret: "s".into() },
    )
}

#[tokio::test]
async fn answers_survive_a_new_process_and_tags_are_always_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counting = Arc::new(Counting::default());
    let pinned: ImageRef = format!("r.io/app@sha256:{}", "a".repeat(64))
        .parse()
        .expect("image");
    let tagged: ImageRef = "r.io/app:v1".parse().expect("image");
    for _run in 0..2 {
        let cache = DiskCache::open(dir.path(), counting.clone()).expect("opens");
        let good = credential("s3cret");
        cache
            .digest(&pinned, Some(&good), &RequestCounter::default())
            .await
            .expect("digest");
        cache
            .digest(&tagged, None, &RequestCounter::default())
            .await
            .expect("digest");
        let found = cache
            .manifest(&pinned, Some(&good), true, &RequestCounter::default())
            .await
            .expect("manifest");
        let platforms = found.platforms.expect("asked").expect("platforms");
        assert_eq!(platforms[0].to_string(), "linux/arm64");
    }
    // The pinned digest and the platforms once; the tag on each run.
    assert_eq!(counting.digests.load(Ordering::SeqCst), 3);
    assert_eq!(counting.manifests.load(Ordering::SeqCst), 1);
    // Another password is asked again.
    let cache = DiskCache::open(dir.path(), counting.clone()).expect("opens");
    cache
        .digest(
            &pinned,
            Some(&credential("other")),
            &RequestCounter::default(),
        )
        .await
        .expect("digest");
    assert_eq!(counting.digests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn image_configs_survive_a_new_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counting = Arc::new(Counting::default());
    let image: ImageRef = "r.io/app:v1".parse().expect("image");
    let digest = format!("sha256:{}", "c".repeat(64));
    for _run in 0..2 {
        let cache = DiskCache::open(dir.path(), counting.clone()).expect("opens");
        let config = cache
            .config(&image, None, &digest, &RequestCounter::default())
            .await
            .expect("config");
        assert_eq!(config.user, "1001");
    }
    assert_eq!(counting.configs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_single_image_kept_before_configs_were_read_is_a_miss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = DiskCache::open(dir.path(), Arc::new(Counting::default())).expect("opens");
    let digest = format!("sha256:{}", "d".repeat(64));
    let path = cache.path("contents", &format!("r.io/app@{digest}"));
    let old = format!(r#"{{"image":"r.io/app","digest":"{digest}","size":10,"index":null}}"#);
    std::fs::write(&path, old).expect("write");
    assert_eq!(cache.contents("r.io/app", &digest), None);
    let kept = Contents::Image {
        size: Some(10),
        config: Some(format!("sha256:{}", "e".repeat(64))),
    };
    cache.remember_contents("r.io/app".into(), &digest, &kept);
    assert_eq!(cache.contents("r.io/app", &digest), Some(kept));
}

#[tokio::test]
async fn no_secret_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = DiskCache::open(dir.path(), Arc::new(Counting::default())).expect("opens");
    let pinned: ImageRef = format!("r.io/app@sha256:{}", "a".repeat(64))
        .parse()
        .expect("image");
    cache
        .digest(
            &pinned,
            Some(&credential("hunter2hunter2")),
            &RequestCounter::default(),
        )
        .await
        .expect("digest");
    let mut stack = vec![dir.path().to_owned()];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).expect("list").flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
                let text = std::fs::read_to_string(entry.path()).expect("text");
                assert!(!text.contains("hunter2"), "{text}");
                assert!(
                    !text.contains(&credential("hunter2hunter2").fingerprint()),
                    "{text}"
                );
            }
        }
    }
    assert_eq!(files, 2, "salt and one entry");
}

#[tokio::test]
async fn a_corrupt_entry_is_a_miss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counting = Arc::new(Counting::default());
    let cache = DiskCache::open(dir.path(), counting.clone()).expect("opens");
    let image: ImageRef = format!("r.io/app@sha256:{}", "a".repeat(64))
        .parse()
        .expect("image");
    let digest = format!("sha256:{}", "a".repeat(64));
    for _ in 0..2 {
        cache
            .manifest(&image, None, true, &RequestCounter::default())
            .await
            .expect("manifest");
    }
    assert_eq!(counting.manifests.load(Ordering::SeqCst), 1, "kept");
    let path = cache.path("platforms", &format!("{}@{digest}", image.name()));
    std::fs::write(&path, b"{not json").expect("corrupt");
    cache
        .manifest(&image, None, true, &RequestCounter::default())
        .await
        .expect("manifest");
    assert_eq!(counting.manifests.load(Ordering::SeqCst), 2);
}
