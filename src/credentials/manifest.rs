//! [`CredentialSource`] over Secrets and ServiceAccounts given as manifests (`pullgate check`'s input),
//! served exactly as the cluster's API would serve them.

use std::collections::HashMap;
use std::fmt;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};

use super::{ApiError, CredentialSource};

/// [`CredentialSource`] over the Secrets and ServiceAccounts of the input, keyed by (namespace, name).
/// An object that is not in the input does not exist, as in a cluster without it. `Debug` lists names.
#[derive(Default)]
pub struct ManifestCredentials {
    secrets: HashMap<(String, String), Secret>,
    service_accounts: HashMap<(String, String), ServiceAccount>,
}

impl ManifestCredentials {
    /// Later objects with the same namespace and name replace earlier ones, as `kubectl apply` would.
    pub fn new(
        secrets: Vec<(String, Secret)>,
        service_accounts: Vec<(String, ServiceAccount)>,
    ) -> Self {
        let key = |namespace: String, name: &Option<String>| {
            (namespace, name.clone().unwrap_or_default())
        };
        Self {
            secrets: secrets
                .into_iter()
                .map(|(ns, s)| (key(ns, &s.metadata.name), s))
                .collect(),
            service_accounts: service_accounts
                .into_iter()
                .map(|(ns, a)| (key(ns, &a.metadata.name), a))
                .collect(),
        }
    }
}

impl fmt::Debug for ManifestCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secrets: Vec<_> = self.secrets.keys().collect();
        secrets.sort();
        let mut accounts: Vec<_> = self.service_accounts.keys().collect();
        accounts.sort();
        f.debug_struct("ManifestCredentials")
            .field("secrets", &secrets)
            .field("service_accounts", &accounts)
            .finish()
    }
}

impl CredentialSource for ManifestCredentials {
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, ApiError>> {
        let found = self
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn service_account<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, ApiError>> {
        let found = self
            .service_accounts
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned();
        Box::pin(async move { Ok(found) })
    }
}
