//! A value a reload replaces while readers hold the one they took: the engine's context, the
//! config and directory the HTTP side answers from.

use std::sync::{Arc, RwLock};

pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> Live<T> {
    pub fn new(value: Arc<T>) -> Live<T> {
        Live(Arc::new(RwLock::new(value)))
    }

    /// The value now (a reader keeps it as long as it needs; the next `get` sees a reload).
    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set(&self, value: Arc<T>) {
        match self.0.write() {
            Ok(mut v) => *v = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}
