//! The HTTP client instant-acme talks to the CA through (rustls with the ring provider,
//! the system CAs plus `[acme] ca_file`), and the HTTP-01 tokens published while an
//! order runs.

use super::*;

/// instant-acme's HTTP client: hyper over rustls with the ring provider, trusting the
/// system's CAs plus `[acme] ca_file`, each exchange bounded in time.
pub(super) struct AcmeHttp(HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>);

impl AcmeHttp {
    pub(super) fn new(ca_file: Option<&Path>) -> Result<AcmeHttp, AcmeError> {
        let extra: Vec<String> = ca_file.iter().map(|p| p.display().to_string()).collect();
        let tls = tls::client_config(&extra).map_err(AcmeError::Client)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .build();
        Ok(AcmeHttp(HyperClient::builder(TokioExecutor::new()).build(https)))
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.0.request(request);
        Box::pin(async move {
            match tokio::time::timeout(HTTP_TIMEOUT, response).await {
                Ok(Ok(response)) => Ok(BytesResponse::from(response)),
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no answer within {} s", HTTP_TIMEOUT.as_secs()).into(),
                )),
            }
        })
    }
}

/// Removes the challenges it published when dropped, whether the order succeeded,
/// failed or was cancelled by a shutdown.
pub(super) struct Published<'a> {
    pub(super) challenges: &'a Http01Challenges,
    pub(super) tokens: Vec<String>,
}

impl Published<'_> {
    pub(super) fn insert(&mut self, token: &str, key_authorization: &str) {
        self.challenges.insert(token, key_authorization);
        self.tokens.push(token.to_string());
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove(token);
        }
    }
}
