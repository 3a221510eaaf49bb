//! Reserve for a request: count the prompt, reserve prompt + maximum output in one call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokenbudget::counter::{self, Result as CountResult};
use tokenbudget::{
    CoreError, CounterId, Encoding, Error, Estimator, Exactness, LocalCounter, Message,
    ReserveOptions, TokenBudget, TokenCount, TokenCounter,
};

/// Answers every count with `tokens`, estimated, and counts its calls.
#[derive(Debug, Default)]
struct Fixed {
    tokens: u64,
    calls: AtomicUsize,
    fail: bool,
}

#[async_trait::async_trait]
impl TokenCounter for Fixed {
    async fn count(&self, _text: &str) -> CountResult<TokenCount> {
        unreachable!("reserve_for_request counts messages")
    }

    async fn count_messages(&self, _messages: &[Message]) -> CountResult<TokenCount> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(counter::Error::InvalidMessage {
                index: 0,
                reason: "rejected on purpose".to_owned(),
            });
        }
        Ok(TokenCount::estimated(self.tokens, CounterId::Claude))
    }
}

fn chat() -> Vec<Message> {
    vec![
        Message::system("You are a careful assistant."),
        Message::user("Summarize the quarterly report in three bullet points.").with_name("ana"),
    ]
}

async fn budgets_with(counter: Arc<dyn TokenCounter>) -> TokenBudget {
    let budgets = TokenBudget::builder()
        .url("memory://")
        .shared_counter(counter)
        .build()
        .await
        .unwrap();
    budgets.create_workflow("wf", 1_000).await.unwrap();
    budgets.create_phase("wf:answer", "wf", 600).await.unwrap();
    budgets
}

#[tokio::test]
async fn reserves_prompt_plus_max_output_in_one_hold() {
    let counter = Arc::new(Fixed {
        tokens: 123,
        ..Fixed::default()
    });
    let budgets = budgets_with(counter.clone()).await;
    let request = budgets
        .reserve_for_request("wf:answer", &chat(), 400, ReserveOptions::new())
        .await
        .unwrap();
    assert_eq!(counter.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        (
            request.prompt.tokens,
            request.max_output_tokens,
            request.requested
        ),
        (123, 400, 523)
    );
    assert!(!request.is_exact());
    assert_eq!(request.exactness(), Exactness::Estimated);
    assert_eq!(request.counter(), CounterId::Claude);
    let grant = request.granted().expect("523 fits in 600");
    assert_eq!(grant.reservation.tokens, 523);
    for id in ["wf:answer", "wf"] {
        let status = budgets.status(id).await.unwrap();
        assert_eq!(
            (status.reserved, status.held),
            (523, 1),
            "{id}: one hold of the sum"
        );
    }
    budgets.commit(grant.reservation.id, 300).await.unwrap();
    assert_eq!(budgets.status("wf").await.unwrap().used, 300);
}

#[tokio::test]
async fn a_refusal_names_the_budget_and_holds_nothing() {
    let budgets = budgets_with(Arc::new(Fixed {
        tokens: 250,
        ..Fixed::default()
    }))
    .await;
    let request = budgets
        .reserve_for_request("wf:answer", &chat(), 400, ReserveOptions::new())
        .await
        .unwrap();
    let refusal = request.refused().expect("650 > 600");
    assert_eq!(
        (
            refusal.budget_id.as_str(),
            refusal.requested,
            refusal.available
        ),
        ("wf:answer", 650, 600)
    );
    assert_eq!(budgets.status("wf").await.unwrap().reserved, 0);
}

#[cfg(feature = "tiktoken")]
#[tokio::test]
async fn the_default_counter_is_exact_openai_o200k() {
    let budgets = TokenBudget::open("memory://").await.unwrap();
    budgets.create_workflow("wf", 10_000).await.unwrap();
    let request = budgets
        .reserve_for_request("wf", &chat(), 256, ReserveOptions::new())
        .await
        .unwrap();
    let expected =
        tokenbudget::OpenAiCounter::new(Encoding::O200kBase).count_messages_sync(&chat());
    assert!(request.is_exact());
    assert_eq!(request.prompt, expected);
    assert_eq!(request.counter(), CounterId::Tiktoken(Encoding::O200kBase));
    assert_eq!(
        request.granted().unwrap().reservation.tokens,
        expected.tokens + 256
    );
}

#[cfg(not(feature = "tiktoken"))]
#[tokio::test]
async fn without_tiktoken_the_default_counter_is_the_estimator() {
    let budgets = TokenBudget::open("memory://").await.unwrap();
    budgets.create_workflow("wf", 10_000).await.unwrap();
    let request = budgets
        .reserve_for_request("wf", &chat(), 256, ReserveOptions::new())
        .await
        .unwrap();
    assert!(!request.is_exact());
    assert_eq!(request.counter(), CounterId::Estimator(Encoding::O200kBase));
}

#[tokio::test]
async fn a_configured_local_counter_is_used() {
    let estimator = Estimator::new(Encoding::Cl100kBase);
    let budgets = budgets_with(Arc::new(estimator)).await;
    let request = budgets
        .reserve_for_request("wf", &chat(), 10, ReserveOptions::new())
        .await
        .unwrap();
    assert_eq!(request.prompt, estimator.count_messages_sync(&chat()));
    assert_eq!(
        budgets.count_messages(&chat()).await.unwrap(),
        request.prompt
    );
}

#[tokio::test]
async fn a_bad_budget_id_is_rejected_before_counting() {
    let counter = Arc::new(Fixed::default());
    let budgets = budgets_with(counter.clone()).await;
    let err = budgets
        .reserve_for_request("no spaces allowed", &chat(), 10, ReserveOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Core(CoreError::InvalidBudgetId { .. })),
        "{err:?}"
    );
    assert_eq!(
        counter.calls.load(Ordering::SeqCst),
        0,
        "no count was paid for"
    );

    let err = budgets
        .reserve_for_request("unknown", &chat(), 10, ReserveOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Core(CoreError::BudgetNotFound { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_counting_error_reserves_nothing() {
    let budgets = budgets_with(Arc::new(Fixed {
        fail: true,
        ..Fixed::default()
    }))
    .await;
    let err = budgets
        .reserve_for_request("wf", &chat(), 10, ReserveOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Count(counter::Error::InvalidMessage { .. })),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(budgets.status("wf").await.unwrap().held, 0);
}

#[tokio::test]
async fn a_sum_beyond_the_largest_amount_is_out_of_range() {
    let budgets = budgets_with(Arc::new(Fixed {
        tokens: 5,
        ..Fixed::default()
    }))
    .await;
    for max_output in [u64::MAX, i64::MAX as u64] {
        let err = budgets
            .reserve_for_request("wf", &chat(), max_output, ReserveOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Core(CoreError::InvalidAmount {
                    field: "tokens",
                    ..
                })
            ),
            "{max_output}: {err:?}"
        );
    }
}
