//! Named code a declaration can refer to: action handlers (§4.3) and
//! hand-written controllers. TOML says `handler = "users::me"`; Rust
//! registers what that name runs. Unknown names fail at start-up.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::actions;
use crate::controller::{ActionHandler, ActionInput, Controller, Ctx, FnHandler, Reply};
use crate::error::ApiError;

#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn ActionHandler>>,
    controllers: HashMap<String, Arc<dyn Controller>>,
}

impl Registry {
    /// restkit's built-in handlers: `echo`, `users::me`, `library::borrow`.
    pub fn builtin() -> Registry {
        let mut r = Registry::default();
        r.handle_fn("echo", actions::echo);
        r.handle_fn("users::me", actions::me);
        r.handle_fn("library::borrow", actions::borrow);
        r
    }

    /// Registers a hand-written controller that declarations name with
    /// `controller = "name"` (TOML) or `.controller("name")` (Rust).
    pub fn controller(&mut self, name: &str, c: impl Controller) -> &mut Self {
        self.controllers.insert(name.to_string(), Arc::new(c));
        self
    }

    /// The controller registered as `name`.
    pub fn find_controller(&self, name: &str) -> Option<Arc<dyn Controller>> {
        self.controllers.get(name).cloned()
    }

    pub fn handle(&mut self, name: &str, handler: impl ActionHandler) -> &mut Self {
        self.handlers.insert(name.to_string(), Arc::new(handler));
        self
    }

    /// Registers an async function as a handler.
    pub fn handle_fn<F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(Ctx, ActionInput) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Reply, ApiError>> + Send + 'static,
    {
        self.handle(name, FnHandler(f))
    }

    /// Registers a handler of typed input and output: `In` (a
    /// `Deserialize` + `JsonSchema` type) is the action's input — its
    /// derived JSON Schema validates the parameters (a 422 per failed
    /// constraint) unless the declaration gives its own `input` — and the
    /// `Out` it returns is the answer; both appear in the OpenAPI document.
    ///
    /// ```
    /// # use restkit::{ApiError, Ctx};
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Quote { amount: u32, currency: String }
    /// #[derive(serde::Serialize, schemars::JsonSchema)]
    /// struct Priced { total: u64 }
    /// let mut registry = restkit::registry::Registry::builtin();
    /// registry.handle_typed("shop::price", |_cx: Ctx, q: Quote| async move {
    ///     Ok::<_, ApiError>(Priced { total: u64::from(q.amount) * 2 })
    /// });
    /// ```
    pub fn handle_typed<F, Fut, In, Out>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(Ctx, In) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, ApiError>> + Send + 'static,
        In: serde::de::DeserializeOwned + schemars::JsonSchema + Send + 'static,
        Out: serde::Serialize + schemars::JsonSchema + Send + 'static,
    {
        self.handle(name, crate::controller::TypedHandler::new(f))
    }

    pub fn handler(&self, name: &str) -> Option<Arc<dyn ActionHandler>> {
        self.handlers.get(name).cloned()
    }
}
