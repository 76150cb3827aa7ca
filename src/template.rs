//! Placeholder replaced by the real engine.
#[derive(Debug)]
pub struct Template(String);
#[derive(Debug, thiserror::Error)]
#[error("template error")]
pub struct TemplateError;
impl Template {
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        Ok(Template(s.to_string()))
    }
    pub fn execute(&self, _d: &serde_json::Value) -> Result<String, TemplateError> {
        Ok(self.0.clone())
    }
}
