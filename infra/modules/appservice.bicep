// App Service plan and the API's web app: Linux, Python 3.11, gunicorn, system identity.
// Every setting the app reads in production is here, as a value or a Key Vault reference
// (tests/test_infra.py checks the list against api/settings.py).

param name string
param suffix string
param location string
param tags object
param workspaceId string

param skuName string
param keyVaultUri string
@description('Versionless secret URIs by setting name (secrets.bicep).')
param secretUris object
param oidcMetadataUrl string
param apiAudience string
param authTenantClaim string
param authRoleClaim string
param b2cConnectorUsername string
param openAiEndpoint string
param openAiDeployment string
param storageBlobEndpoint string
param appRole string
@description('\'transaction\' when the app role goes through PgBouncer, else empty.')
param databaseAppPooler string
param billingPrincipals string
param corsOrigins array

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy needs Premium v3 with three instances; the decision record's MVP plan is B1 (Basic), which has none
  name: '${name}-plan-${suffix}'
  location: location
  tags: tags
  kind: 'linux'
  sku: { name: skuName }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2023-12-01' = {
  // checkov:skip=CKV_AZURE_212: a B1 plan runs one instance; failover capacity (two or more instances) is a plan-size decision, not available at the MVP's tier
  // checkov:skip=CKV_AZURE_222: the API is public by design: browsers of the practices and the B2C API connector call it over the internet (bearer tokens / HTTP Basic)
  // checkov:skip=CKV_AZURE_17: callers authenticate with bearer tokens (and B2C's connector with HTTP Basic); browsers present no client certificates
  name: '${name}-api-${suffix}'
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'app,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: 'SystemAssigned'
    siteConfig: {
      linuxFxVersion: 'PYTHON|3.11'
      // `flask tenancy upgrade` (serialised across instances), then `exec gunicorn wsgi:app`.
      appCommandLine: 'bash scripts/appservice-start.sh'
      healthCheckPath: '/readyz'
      alwaysOn: true
      http20Enabled: true
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      remoteDebuggingEnabled: false
      httpLoggingEnabled: true
      cors: { allowedOrigins: corsOrigins, supportCredentials: false }
      appSettings: [
        { name: 'APP_ENV', value: 'production' }
        { name: 'AZURE_KEY_VAULT_URL', value: keyVaultUri }
        { name: 'DATABASE_URL', value: '@Microsoft.KeyVault(SecretUri=${secretUris.DATABASE_URL})' }
        { name: 'DATABASE_APP_URL', value: '@Microsoft.KeyVault(SecretUri=${secretUris.DATABASE_APP_URL})' }
        { name: 'DATABASE_APP_PASSWORD', value: '@Microsoft.KeyVault(SecretUri=${secretUris.DATABASE_APP_PASSWORD})' }
        { name: 'DATABASE_APP_ROLE', value: appRole }
        { name: 'DATABASE_APP_POOLER', value: databaseAppPooler }
        { name: 'AUTH_OIDC_METADATA_URL', value: oidcMetadataUrl }
        { name: 'AUTH_AUDIENCE', value: apiAudience }
        { name: 'AUTH_TENANT_CLAIM', value: authTenantClaim }
        { name: 'AUTH_ROLE_CLAIM', value: authRoleClaim }
        { name: 'B2C_CONNECTOR_USERNAME', value: b2cConnectorUsername }
        { name: 'B2C_CONNECTOR_PASSWORD', value: '@Microsoft.KeyVault(SecretUri=${secretUris.B2C_CONNECTOR_PASSWORD})' }
        { name: 'AZURE_OPENAI_ENDPOINT', value: openAiEndpoint }
        { name: 'AZURE_OPENAI_CHAT_DEPLOYMENT', value: openAiDeployment }
        { name: 'AZURE_STORAGE_ACCOUNT_URL', value: storageBlobEndpoint }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: '@Microsoft.KeyVault(SecretUri=${secretUris.APPLICATIONINSIGHTS_CONNECTION_STRING})' }
        { name: 'BILLING_PRINCIPALS', value: billingPrincipals }
        // Platform: Oryx installs requirements.txt at deployment; migrations may take a
        // while before gunicorn listens (scripts/appservice-start.sh).
        { name: 'SCM_DO_BUILD_DURING_DEPLOYMENT', value: 'true' }
        { name: 'WEBSITES_CONTAINER_START_TIME_LIMIT', value: '1200' }
        // gunicornc's local control socket has no use on App Service.
        { name: 'GUNICORN_CONTROL_SOCKET', value: 'off' }
      ]
    }
  }
}

// Deployments authenticate with Entra ID (azd, az webapp deploy), never with publishing
// passwords.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: app
  name: 'ftp'
  properties: { allow: false }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: app
  name: 'scm'
  properties: { allow: false }
}

// HTTP logs feed the 5xx-rate and latency alerts (alerts.bicep); console logs hold the
// startup script's migration report. The app's JSON logs carry no PII.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'logs-to-workspace'
  scope: app
  properties: {
    workspaceId: workspaceId
    logs: [
      { category: 'AppServiceHTTPLogs', enabled: true }
      { category: 'AppServiceConsoleLogs', enabled: true }
      { category: 'AppServicePlatformLogs', enabled: true }
    ]
  }
}

output name string = app.name
output id string = app.id
output principalId string = app.identity.principalId
output defaultHostName string = app.properties.defaultHostName
