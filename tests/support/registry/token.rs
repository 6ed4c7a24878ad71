//! The token service of a token-auth test registry: an in-process axum endpoint on 127.0.0.1 issuing
//! ES256 JWTs whose signer certificate is in `x5c`, for one user and password.

use super::*;

pub(super) struct TokenServer {
    task: JoinHandle<()>,
    pub(super) requests: Arc<AtomicUsize>,
    pub(super) realm: String,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct TokenIssuer {
    user: String,
    pass: String,
    signer: EcdsaKeyPair,
    /// base64 (standard, padded) DER of the signer's self-signed certificate.
    x5c: String,
    rng: SystemRandom,
    requests: Arc<AtomicUsize>,
}

/// Serves `GET /token` on a random loopback port; returns the `auth` YAML block.
pub(super) async fn start_token_server(
    dir: &Path,
    user: &str,
    pass: &str,
) -> anyhow::Result<(String, TokenServer)> {
    let key = KeyPair::generate()?; // ECDSA P-256, so ES256
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "pullgate test token signer");
    let cert = params.self_signed(&key)?;
    let bundle = dir.join("token-signer.pem");
    fs::write(&bundle, cert.pem())?;

    let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der())
        .map_err(|e| anyhow!("loading the token signing key: {e}"))?;
    let requests = Arc::new(AtomicUsize::new(0));
    let issuer = Arc::new(TokenIssuer {
        user: user.to_owned(),
        pass: pass.to_owned(),
        signer,
        x5c: STANDARD.encode(cert.der()),
        rng: SystemRandom::new(),
        requests: Arc::clone(&requests),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let realm = format!("http://{}/token", listener.local_addr()?);
    let app = Router::new()
        .route("/token", get(issue_token))
        .with_state(issuer);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let yaml = format!(
        "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
        Value::from(realm.as_str()),
        yaml_str(&bundle)
    );
    Ok((
        yaml,
        TokenServer {
            task,
            requests,
            realm,
        },
    ))
}

/// Checks Basic credentials; grants every requested scope action to the right user.
async fn issue_token(
    State(issuer): State<Arc<TokenIssuer>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    issuer.requests.fetch_add(1, Ordering::SeqCst);
    let right = basic_credentials(&headers)
        .is_some_and(|(user, pass)| user == issuer.user && pass == issuer.pass);
    if !right {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"pullgate-test\"")],
            Json(json!({ "details": "wrong or missing username or password" })),
        )
            .into_response();
    }
    let access: Vec<Value> = params
        .iter()
        .filter(|(key, _)| key == "scope")
        .flat_map(|(_, scopes)| scopes.split(' '))
        .filter_map(scope_claim)
        .collect();
    match issuer.sign(&access) {
        Ok(token) => Json(json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_TTL_SECS,
        }))
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// `repository:team/app:pull,push` -> `{"type", "name", "actions"}`. Repositories under `forbidden/`
/// get no actions: the user authenticates but may not pull them (`insufficient_scope`).
fn scope_claim(scope: &str) -> Option<Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = if name.starts_with("forbidden/") {
        Vec::new()
    } else {
        actions.split(',').filter(|a| !a.is_empty()).collect()
    };
    Some(json!({ "type": kind, "name": name, "actions": actions }))
}

impl TokenIssuer {
    fn sign(&self, access: &[Value]) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let n = self.requests.load(Ordering::SeqCst);
        let header = json!({ "alg": "ES256", "typ": "JWT", "x5c": [self.x5c] });
        let claims = json!({
            "iss": TOKEN_ISSUER,
            "sub": self.user,
            "aud": TOKEN_SERVICE,
            "iat": now,
            "nbf": now.saturating_sub(10),
            "exp": now + TOKEN_TTL_SECS,
            "jti": format!("{now}-{n}"),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
        );
        let signature = self
            .signer
            .sign(&self.rng, input.as_bytes())
            .map_err(|e| anyhow!("signing a token: {e}"))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}
