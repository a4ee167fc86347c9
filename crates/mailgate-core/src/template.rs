//! Provider templates: the token URL and scopes an admin would otherwise look up.

use serde::Serialize;

/// A provider template as offered by the API and the UI.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Template {
    pub id: &'static str,
    pub label: &'static str,
    pub token_url: &'static str,
    pub scopes: &'static [&'static str],
    pub needs_tenant: bool,
}

pub const TEMPLATES: &[Template] = &[
    Template {
        id: "microsoft365",
        label: "Microsoft 365 (global)",
        token_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        scopes: &["https://outlook.office365.com/.default"],
        needs_tenant: true,
    },
    Template {
        id: "microsoft365-usgov",
        label: "Microsoft 365 US Government (GCC High / DoD)",
        token_url: "https://login.microsoftonline.us/{tenant}/oauth2/v2.0/token",
        scopes: &["https://outlook.office365.us/.default"],
        needs_tenant: true,
    },
    Template {
        id: "microsoft365-china",
        label: "Microsoft 365 operated by 21Vianet (China)",
        token_url: "https://login.chinacloudapi.cn/{tenant}/oauth2/v2.0/token",
        scopes: &["https://partner.outlook.cn/.default"],
        needs_tenant: true,
    },
    Template {
        id: "google",
        label: "Google Workspace (service account, domain-wide delegation)",
        token_url: "https://oauth2.googleapis.com/token",
        scopes: &["https://mail.google.com/"],
        needs_tenant: false,
    },
    Template { id: "custom", label: "Custom provider", token_url: "", scopes: &[], needs_tenant: false },
];

/// The template with this id.
pub fn find(id: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.id == id)
}

/// True for the Microsoft templates, whose errors and tokens follow Entra's formats.
pub fn is_microsoft(id: &str) -> bool {
    id.starts_with("microsoft365")
}
