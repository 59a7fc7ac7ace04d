//! Running futures side by side, at most so many at a time, on the task that awaits them (no
//! spawn: they may borrow).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

/// Awaits every future of `futures`, at most `limit` (at least 1) at a time, started in their
/// order; the outputs come back in the same order.
pub(crate) async fn join_limited<F: Future>(futures: impl IntoIterator<Item = F>, limit: usize) -> Vec<F::Output> {
    let limit = limit.max(1);
    let mut waiting = futures.into_iter();
    let mut running: Vec<(usize, Pin<Box<F>>)> = Vec::with_capacity(limit);
    let mut outputs: Vec<Option<F::Output>> = Vec::new();
    loop {
        while running.len() < limit {
            let Some(future) = waiting.next() else { break };
            running.push((outputs.len(), Box::pin(future)));
            outputs.push(None);
        }
        if running.is_empty() {
            break;
        }
        // Until at least one finishes; each is polled on every wake-up.
        poll_fn(|cx| {
            let mut finished = false;
            let mut k = 0;
            while k < running.len() {
                match running[k].1.as_mut().poll(cx) {
                    Poll::Ready(output) => {
                        let (at, _) = running.swap_remove(k);
                        outputs[at] = Some(output);
                        finished = true;
                    }
                    Poll::Pending => k += 1,
                }
            }
            if finished { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
    }
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn outputs_in_order_and_never_more_than_the_limit_at_once() {
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let futures = (0..20u64).map(|i| {
            let (now, most) = (now.clone(), most.clone());
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(running, Ordering::SeqCst);
                // Later ones finish first: the order of outputs is not the order of finishing.
                tokio::time::sleep(Duration::from_millis(20 - i)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                i
            }
        });
        let outputs = join_limited(futures, 4).await;
        assert_eq!(outputs, (0..20).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 4, "four at a time, not fewer, not more");
        assert!(join_limited(Vec::<std::future::Ready<u8>>::new(), 0).await.is_empty());
        assert_eq!(join_limited([std::future::ready(7)], 0).await, vec![7], "a limit of 0 runs one at a time");
    }
}
