//! Hook futures that allocate nothing when the hook's work is already done.
//!
//! Pingora's [`ProxyHttp`](pingora::proxy::ProxyHttp) hooks are `#[async_trait]` methods: each
//! call returns a boxed future, and an `async` body's future holds the hook's arguments, so every
//! call of a hook written as `async fn` is one allocation. Most of Switchyard's hooks do all
//! their work synchronously unless an [`Extension`](crate::extension::Extension) is installed.
//! Those hooks are written as `#[async_trait]` expands them: they do the work when called and
//! return a future that is ready at once and zero-sized, which `Box::pin` does not allocate.
//! An error, which is rare, is boxed as usual.
//!
//! ```
//! use std::future::Future;
//! use std::pin::pin;
//! use std::task::{Context, Poll, Waker};
//!
//! let fut = switchyard_proxy::service::ready::finished(Ok(()));
//! assert_eq!(std::mem::size_of_val(&*fut), 0);
//! let mut cx = Context::from_waker(Waker::noop());
//! assert!(matches!(pin!(fut).poll(&mut cx), Poll::Ready(Ok(()))));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pingora::Result;

/// The future an `#[async_trait]` hook returns.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A future ready at once with what `F` returns. For a closure that captures nothing it is
/// zero-sized, so boxing it allocates nothing.
struct ReadyWith<F>(F);

impl<T, F: Fn() -> T + Unpin> Future for ReadyWith<F> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<T> {
        Poll::Ready((self.0)())
    }
}

/// The future of a hook that has finished: no allocation for `Ok(())`.
pub fn finished<'a>(result: Result<()>) -> HookFuture<'a, Result<()>> {
    match result {
        Ok(()) => Box::pin(ReadyWith(|| Ok(()))),
        Err(e) => Box::pin(std::future::ready(Err(e))),
    }
}

/// The future of a hook that has decided: no allocation for `Ok(true)` or `Ok(false)`.
pub fn decided<'a>(result: Result<bool>) -> HookFuture<'a, Result<bool>> {
    match result {
        Ok(true) => Box::pin(ReadyWith(|| Ok(true))),
        Ok(false) => Box::pin(ReadyWith(|| Ok(false))),
        Err(e) => Box::pin(std::future::ready(Err(e))),
    }
}

/// The future of a hook that returns nothing and has finished: no allocation.
pub fn done<'a>() -> HookFuture<'a, ()> {
    Box::pin(ReadyWith(|| ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::task::Waker;

    fn poll_once<T>(fut: HookFuture<'_, T>) -> Poll<T> {
        let mut cx = Context::from_waker(Waker::noop());
        pin!(fut).poll(&mut cx)
    }

    #[test]
    fn the_usual_answers_are_zero_sized() {
        assert_eq!(std::mem::size_of_val(&*finished(Ok(()))), 0);
        assert_eq!(std::mem::size_of_val(&*decided(Ok(true))), 0);
        assert_eq!(std::mem::size_of_val(&*decided(Ok(false))), 0);
        assert_eq!(std::mem::size_of_val(&*done()), 0);
    }

    #[test]
    fn every_answer_is_ready_with_its_value() {
        assert!(matches!(
            poll_once(decided(Ok(true))),
            Poll::Ready(Ok(true))
        ));
        assert!(matches!(
            poll_once(decided(Ok(false))),
            Poll::Ready(Ok(false))
        ));
        assert!(matches!(poll_once(finished(Ok(()))), Poll::Ready(Ok(()))));
        assert!(matches!(poll_once(done()), Poll::Ready(())));
        let err = || pingora::Error::new(pingora::ErrorType::InternalError);
        match poll_once(finished(Err(err()))) {
            Poll::Ready(Err(e)) => assert_eq!(e.etype(), &pingora::ErrorType::InternalError),
            _ => panic!("an error must be passed on"),
        }
        match poll_once(decided(Err(err()))) {
            Poll::Ready(Err(e)) => assert_eq!(e.etype(), &pingora::ErrorType::InternalError),
            _ => panic!("an error must be passed on"),
        }
    }
}
