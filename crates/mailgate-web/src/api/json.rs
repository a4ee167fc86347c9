//! A JSON body extractor whose errors are problem+json like every other error.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use mailgate_core::ValidationErrors;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Like `axum::Json`, with malformed bodies answered as 400/415/422 problems.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::Validation(ValidationErrors::single("body", e.body_text())),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("send the body as Content-Type: application/json".into())
        }
        JsonRejection::BytesRejection(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("the request body is larger than allowed".into())
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// Like `axum::extract::Query`, with bad parameters answered as a 422 problem.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::Validation(ValidationErrors::single("query", e.to_string())))
    }
}

/// Parses JSON from bytes with the same error shape.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_free(de)
}

fn serde_path_free<'de, T: DeserializeOwned>(de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>) -> Result<T, ApiError> {
    match T::deserialize(&mut *de).and_then(|v| de.end().map(|()| v)) {
        Ok(v) => Ok(v),
        Err(e) if e.is_data() => Err(ApiError::Validation(ValidationErrors::single("body", e.to_string()))),
        Err(e) => Err(ApiError::BadRequest(format!("the body is not valid JSON: {e}"))),
    }
}
