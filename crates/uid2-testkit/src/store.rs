//! A store that wraps a real one and lets a test act before each operation: refuse it as a
//! store outage would, or change the store underneath it as a concurrent writer (another
//! operator, a rotation) would. Every operation the hook lets through runs on the real store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use uid2_proto::salt::{RawUidSettings, SaltTable};
use uid2_store::{
    Claim, ClientRecord, Conditional, CstgKeypairRecord, Generations, InitialState, KeyChange,
    KeyRecord, KeysetRecord, OptOutRecord, Precondition, Result, SaltMeta, SaltState, SiteRecord,
    Store, StoreError, Versioned,
};

type HookFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
type Hook = Box<dyn Fn(&'static str) -> HookFuture + Send + Sync>;

/// A [`Store`] whose every operation first runs a hook, given the operation's name (the
/// [`Store`] method's, e.g. `"append_optout"`); an error from the hook is the operation's answer.
pub struct HookedStore {
    inner: Arc<dyn Store>,
    hook: Hook,
}

impl HookedStore {
    /// Wraps `inner`; `hook` runs before each operation.
    pub fn new<F, Fut>(inner: Arc<dyn Store>, hook: F) -> Self
    where
        F: Fn(&'static str) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        Self {
            inner,
            hook: Box::new(move |op| Box::pin(hook(op))),
        }
    }

    /// Wraps `inner` so that every operation fails as [`StoreError::Unavailable`] while the
    /// returned switch is on (it starts off).
    pub fn with_outage(inner: Arc<dyn Store>) -> (Self, Arc<AtomicBool>) {
        let down = Arc::new(AtomicBool::new(false));
        let switch = down.clone();
        let store = Self::new(inner, move |op| {
            let down = down.load(Ordering::SeqCst);
            async move {
                if down {
                    Err(StoreError::Unavailable(format!(
                        "{op}: the test cut the store off"
                    )))
                } else {
                    Ok(())
                }
            }
        });
        (store, switch)
    }
}

#[async_trait::async_trait]
impl Store for HookedStore {
    fn describe(&self) -> String {
        format!("hooked {}", self.inner.describe())
    }

    async fn back_up(&self, destination: &std::path::Path) -> Result<u64> {
        (self.hook)("back_up").await?;
        self.inner.back_up(destination).await
    }

    async fn initialize(&self, state: &InitialState) -> Result<bool> {
        (self.hook)("initialize").await?;
        self.inner.initialize(state).await
    }

    async fn is_initialized(&self) -> Result<bool> {
        (self.hook)("is_initialized").await?;
        self.inner.is_initialized().await
    }

    async fn generations(&self) -> Result<Generations> {
        (self.hook)("generations").await?;
        self.inner.generations().await
    }

    async fn meta(&self, name: &str) -> Result<Option<String>> {
        (self.hook)("meta").await?;
        self.inner.meta(name).await
    }

    async fn raw_uid_settings(&self) -> Result<Option<RawUidSettings>> {
        (self.hook)("raw_uid_settings").await?;
        self.inner.raw_uid_settings().await
    }

    async fn adopt_raw_uid_settings(&self, settings: &RawUidSettings) -> Result<RawUidSettings> {
        (self.hook)("adopt_raw_uid_settings").await?;
        self.inner.adopt_raw_uid_settings(settings).await
    }

    async fn raise_setting(&self, name: &str, value: i64) -> Result<i64> {
        (self.hook)("raise_setting").await?;
        self.inner.raise_setting(name, value).await
    }

    async fn last_claim_ms(&self, job: &str) -> Result<Option<i64>> {
        (self.hook)("last_claim_ms").await?;
        self.inner.last_claim_ms(job).await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>> {
        (self.hook)("clients").await?;
        self.inner.clients().await
    }

    async fn insert_client(&self, client: &ClientRecord) -> Result<()> {
        (self.hook)("insert_client").await?;
        self.inner.insert_client(client).await
    }

    async fn set_client_disabled(&self, key_id_or_name: &str, disabled: bool) -> Result<bool> {
        (self.hook)("set_client_disabled").await?;
        self.inner
            .set_client_disabled(key_id_or_name, disabled)
            .await
    }

    async fn rekey_client(&self, key_id: &str, new: &ClientRecord) -> Result<bool> {
        (self.hook)("rekey_client").await?;
        self.inner.rekey_client(key_id, new).await
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>> {
        (self.hook)("sites").await?;
        self.inner.sites().await
    }

    async fn upsert_site(&self, site: &SiteRecord) -> Result<()> {
        (self.hook)("upsert_site").await?;
        self.inner.upsert_site(site).await
    }

    async fn keysets(&self) -> Result<Vec<KeysetRecord>> {
        (self.hook)("keysets").await?;
        self.inner.keysets().await
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>> {
        (self.hook)("keys").await?;
        self.inner.keys().await
    }

    async fn change_keys(
        &self,
        change: &KeyChange,
        pre: &Precondition,
    ) -> Result<Conditional<Vec<u32>>> {
        (self.hook)("change_keys").await?;
        self.inner.change_keys(change, pre).await
    }

    async fn salts(&self) -> Result<Option<Versioned<SaltState>>> {
        (self.hook)("salts").await?;
        self.inner.salts().await
    }

    async fn salt_table(&self) -> Result<Option<(SaltMeta, SaltTable)>> {
        (self.hook)("salt_table").await?;
        self.inner.salt_table().await
    }

    async fn claim_unchanged_salts(&self, claim: &Claim) -> Result<bool> {
        (self.hook)("claim_unchanged_salts").await?;
        self.inner.claim_unchanged_salts(claim).await
    }

    async fn replace_salt_buckets(
        &self,
        state: &SaltState,
        pre: &Precondition,
    ) -> Result<Conditional<()>> {
        (self.hook)("replace_salt_buckets").await?;
        self.inner.replace_salt_buckets(state, pre).await
    }

    async fn cstg_keypairs(&self) -> Result<Vec<CstgKeypairRecord>> {
        (self.hook)("cstg_keypairs").await?;
        self.inner.cstg_keypairs().await
    }

    async fn insert_cstg_keypair(&self, keypair: &CstgKeypairRecord) -> Result<()> {
        (self.hook)("insert_cstg_keypair").await?;
        self.inner.insert_cstg_keypair(keypair).await
    }

    async fn append_optout(
        &self,
        first_level_hash: [u8; 32],
        advertising_id: Option<Vec<u8>>,
        opted_out_at_ms: i64,
    ) -> Result<OptOutRecord> {
        (self.hook)("append_optout").await?;
        self.inner
            .append_optout(first_level_hash, advertising_id, opted_out_at_ms)
            .await
    }

    async fn optouts_after(&self, after: i64, limit: usize) -> Result<Vec<OptOutRecord>> {
        (self.hook)("optouts_after").await?;
        self.inner.optouts_after(after, limit).await
    }
}
