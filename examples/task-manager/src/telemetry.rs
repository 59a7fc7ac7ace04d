//! Logs to stderr and, with the feature `otel` and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans
//! exported over OTLP/HTTP (JSON bodies) with the framework's trace propagation hook installed,
//! so that a trace goes from an HTTP request through the events it appended to the projector
//! process that wrote their views.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::Role;

/// What was started: flushed and stopped by [`Telemetry::shutdown`].
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// Installs the process's subscriber (and, with `otel`, the exporter and the hook). The runtime
/// is the one the exporter's HTTP requests run on.
pub fn init(runtime: &tokio::runtime::Runtime, role: Role) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otel")]
    {
        let (layer, provider) = match otel::start(runtime.handle().clone(), role) {
            Ok(Some((provider, tracer))) => (Some(tracing_opentelemetry::layer().with_tracer(tracer)), Some(provider)),
            Ok(None) => (None, None),
            Err(error) => {
                eprintln!("task-manager: not exporting traces: {error}");
                (None, None)
            }
        };
        registry.with(layer).init();
        if provider.is_some() {
            // The first hook installed stays; this process installs only this one.
            let _ = eventloom::trace::install(otel::Propagation);
            tracing::info!(%role, "exporting traces over OTLP/HTTP");
        }
        Telemetry { provider }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (runtime, role);
        registry.init();
        Telemetry {}
    }
}

impl Telemetry {
    /// Exports the spans not exported yet and stops the exporter (on SIGTERM, Ctrl-C, or a
    /// failure); call it while the runtime still runs.
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider {
            if let Err(error) = provider.force_flush() {
                eprintln!("task-manager: traces not all exported: {error}");
            }
            let _ = provider.shutdown();
        }
    }
}

#[cfg(feature = "otel")]
mod otel {
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Duration;

    use eventloom::trace::{TraceContext, TracePropagation};
    use http_body_util::BodyExt;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use opentelemetry::{Context, KeyValue};
    use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use crate::cli::Role;

    /// The variables that turn export on (the exporter reads them too).
    const ENDPOINTS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

    /// The exporter and its tracer, when an endpoint is set.
    pub(super) fn start(
        runtime: tokio::runtime::Handle,
        role: Role,
    ) -> Result<Option<(SdkTracerProvider, SdkTracer)>, String> {
        if !ENDPOINTS.iter().any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty())) {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_http_client(Plain { runtime })
            .build()
            .map_err(|e| e.to_string())?;
        let resource = Resource::builder()
            .with_service_name("task-manager")
            .with_attribute(KeyValue::new("task_manager.role", role.to_string()))
            .build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        let tracer = provider.tracer("task-manager");
        Ok(Some((provider, tracer)))
    }

    /// The framework's trace propagation hook over `tracing-opentelemetry`.
    pub(super) struct Propagation;

    impl TracePropagation for Propagation {
        fn context(&self, span: &tracing::Span) -> Option<TraceContext> {
            let cx = span.context();
            let otel = cx.span();
            let sc = otel.span_context();
            if !sc.is_valid() {
                return None;
            }
            let tp = format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8());
            let context = TraceContext::parse(&tp)?;
            let state = sc.trace_state().header();
            Some(if state.is_empty() { context } else { context.with_tracestate(state) })
        }

        fn set_parent(&self, span: &tracing::Span, parent: &TraceContext) {
            if let Some(sc) = span_context(parent) {
                let _ = span.set_parent(Context::new().with_remote_span_context(sc));
            }
        }

        fn add_link(&self, span: &tracing::Span, to: &TraceContext) {
            if let Some(sc) = span_context(to) {
                span.add_link(sc);
            }
        }
    }

    fn span_context(context: &TraceContext) -> Option<SpanContext> {
        let trace_id = TraceId::from_hex(context.trace_id()).ok()?;
        let span_id = SpanId::from_hex(context.parent_id()).ok()?;
        let flags = TraceFlags::new(context.flags() & TraceFlags::SAMPLED.to_u8());
        let state = context.tracestate().and_then(|s| s.parse::<TraceState>().ok()).unwrap_or_default();
        Some(SpanContext::new(trace_id, span_id, flags, true, state))
    }

    /// How long one export may take.
    const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

    /// OTLP over plain HTTP/1.1 on hyper (in the tree already through axum), each request run on
    /// the application's runtime: the SDK's batch processor exports from a thread of its own.
    /// An `https://` endpoint is refused (put a collector beside the process).
    #[derive(Debug)]
    struct Plain {
        runtime: tokio::runtime::Handle,
    }

    impl HttpClient for Plain {
        fn send_bytes<'a, 'b>(
            &'a self,
            request: Request<Bytes>,
        ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
        where
            'a: 'b,
            Self: 'b,
        {
            let sent = self.runtime.spawn(async move {
                match tokio::time::timeout(EXPORT_TIMEOUT, send(request)).await {
                    Ok(sent) => sent,
                    Err(_) => Err(HttpError::from("the OTLP endpoint did not answer in time")),
                }
            });
            Box::pin(async move { sent.await.map_err(HttpError::from)? })
        }
    }

    async fn send(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let uri = request.uri().clone();
        if uri.scheme_str() != Some("http") {
            return Err(format!("only http:// OTLP endpoints are supported, not {uri}").into());
        }
        let host = uri.host().ok_or("the OTLP endpoint has no host")?.to_owned();
        let port = uri.port_u16().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let (mut parts, body) = request.into_parts();
        let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or(host);
        parts.headers.insert(hyper::header::HOST, authority.parse()?);
        parts.uri = uri.path_and_query().map_or("/", |p| p.as_str()).parse()?;
        let response = sender.send_request(Request::from_parts(parts, http_body_util::Full::new(body))).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}
