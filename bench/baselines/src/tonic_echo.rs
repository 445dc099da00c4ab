//! The `bench.Echo` service written by hand against `tonic::server::Grpc` (no protoc): one
//! method, `Call`, that answers its request. Shared by `grpc-unary` and `grpc-compare`.

use std::convert::Infallible;
use std::task::{Context as TaskContext, Poll};

use tonic::body::BoxBody;
use tonic::codec::ProstCodec;
use tonic::codegen::{http, BoxFuture};

/// The request and the response: one bytes field.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    /// The payload.
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

pub const METHOD: &str = "/bench.Echo/Call";

/// The `Call` method: answers its request.
struct Call;

impl tonic::server::UnaryService<Msg> for Call {
    type Response = Msg;
    type Future = std::future::Ready<Result<tonic::Response<Msg>, tonic::Status>>;
    fn call(&mut self, request: tonic::Request<Msg>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(request.into_inner())))
    }
}

/// The `bench.Echo` service, routed by path as tonic's generated servers do.
#[derive(Clone)]
pub struct EchoServer;

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = "bench.Echo";
}

impl tower::Service<http::Request<BoxBody>> for EchoServer {
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        if req.uri().path() == METHOD {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
                Ok(grpc.unary(Call, req).await)
            })
        } else {
            Box::pin(async move {
                Ok(tonic::Status::unimplemented(req.uri().path().to_string()).into_http())
            })
        }
    }
}
