//! Microsoft Entra `AADSTS` error codes and what they mean to the admin who set mailgate up.
//! Step numbers refer to the setup guide (register app → permissions → secret → mailbox access).

/// The likely cause of a provider error and how to fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Explanation {
    pub code: i64,
    pub cause: &'static str,
    pub fix: &'static str,
    /// Whether a retry without an admin's change can succeed.
    pub temporary: bool,
}

const TABLE: &[Explanation] = &[
    Explanation {
        code: 7000215,
        cause: "the client secret is wrong — often the secret's ID was pasted instead of its value",
        fix: "in Entra (Certificates & secrets) copy the secret's Value, not its Secret ID, and paste it into the OAuth client (setup step 5, 8.1)",
        temporary: false,
    },
    Explanation {
        code: 7000222,
        cause: "the client secret has expired",
        fix: "create a new client secret in Entra, paste its value into the OAuth client and set the new expiration date (setup steps 5 and 8.1)",
        temporary: false,
    },
    Explanation {
        code: 700016,
        cause: "no application with this client ID exists in the tenant",
        fix: "check the Application (client) ID and the tenant: both are on the app registration's overview page (setup step 4)",
        temporary: false,
    },
    Explanation {
        code: 90002,
        cause: "the tenant was not found",
        fix: "enter the Directory (tenant) ID or a verified domain such as contoso.onmicrosoft.com (setup step 4)",
        temporary: false,
    },
    Explanation {
        code: 70011,
        cause: "the scope is invalid for this grant",
        fix: "use the scope https://outlook.office365.com/.default (the Microsoft 365 template fills it in)",
        temporary: false,
    },
    Explanation {
        code: 700022,
        cause: "the scopes name more than one resource",
        fix: "request one resource per OAuth client: https://outlook.office365.com/.default",
        temporary: false,
    },
    Explanation {
        code: 500011,
        cause: "the resource named in the scope does not exist in the tenant",
        fix: "use the scope https://outlook.office365.com/.default (Office 365 Exchange Online)",
        temporary: false,
    },
    Explanation {
        code: 7000218,
        cause: "the request carried no client secret",
        fix: "enter the client secret in the OAuth client (setup step 5, 8.1)",
        temporary: false,
    },
    Explanation {
        code: 700027,
        cause: "the client assertion's signature is invalid",
        fix: "upload the certificate to the app registration, or select the matching private key",
        temporary: false,
    },
    Explanation {
        code: 700023,
        cause: "the client assertion's audience is not the token URL Microsoft expects",
        fix: "check the token URL and the tenant; mailgate signs the assertion for the configured token URL",
        temporary: false,
    },
    Explanation {
        code: 700024,
        cause: "the client assertion is outside its valid time range — this machine's clock is probably wrong",
        fix: "synchronise the clock (NTP)",
        temporary: false,
    },
    Explanation {
        code: 700021,
        cause: "the client assertion names another application than the client ID",
        fix: "check the OAuth client's client ID",
        temporary: false,
    },
    Explanation {
        code: 50013,
        cause: "the client assertion was rejected (signature, or an assertion used twice)",
        fix: "check that the certificate uploaded to the app registration is the one configured here",
        temporary: false,
    },
    Explanation {
        code: 53003,
        cause: "a Conditional Access policy of the tenant blocked the sign-in",
        fix: "ask the tenant's admin to exclude this application from the policy",
        temporary: false,
    },
    Explanation {
        code: 9001023,
        cause: "the client credentials grant is not supported on /common or /consumers",
        fix: "put the tenant ID or domain into the OAuth client's tenant field instead of 'common'",
        temporary: false,
    },
];

/// Google's token errors (no numeric codes; matched on `error` and the description).
pub fn explain_google(error: &str, description: &str) -> Option<Explanation> {
    let e = |cause: &'static str, fix: &'static str| Some(Explanation { code: 0, cause, fix, temporary: false });
    match error {
        "unauthorized_client" => e(
            "domain-wide delegation is not set up for this service account, or not for the scope https://mail.google.com/",
            "Google Admin console → Security → API controls → Domain-wide delegation: add the service account's client ID with the scope https://mail.google.com/",
        ),
        "invalid_grant" if description.contains("Signature") => e(
            "the service-account key is wrong, deleted or disabled",
            "create a new JSON key for the service account and upload it",
        ),
        "invalid_grant" if description.contains("audience") || description.contains("aud") => e(
            "the assertion's audience is not Google's token URL",
            "use the token URL https://oauth2.googleapis.com/token",
        ),
        "invalid_grant" if description.contains("timeframe") || description.contains("iat") => e(
            "the assertion is outside its valid time — this machine's clock is probably wrong",
            "synchronise the clock (NTP)",
        ),
        "invalid_grant" => e("Google refused the assertion (the mailbox may not exist or not be in the domain)", "check the account's username and the service account"),
        "invalid_client" => e("the service account does not exist (deleted?)", "check the key file's client_email and create a new key"),
        "invalid_scope" => e("the scope is not valid for mail", "use the scope https://mail.google.com/"),
        _ => None,
    }
}

/// The explanation for an `AADSTS` code, if known.
pub fn explain(code: i64) -> Option<&'static Explanation> {
    TABLE.iter().find(|e| e.code == code)
}

/// The first `AADSTSnnnn` code in a description (for providers that send no `error_codes`).
pub fn code_in_description(description: &str) -> Option<i64> {
    let start = description.find("AADSTS")? + "AADSTS".len();
    let digits: String = description[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
