// The secrets the app reads (api/secrets.py SECRET_SETTINGS), written from the deployment's
// secure parameters. The web app gets them as Key Vault references (appservice.bicep).
// Rotation: docs/operations.md. Each entry's name is the setting's secret name in the vault.

param vaultName string
param insightsName string
param postgresFqdn string
param databaseName string
param adminLogin string
@secure()
param adminPassword string
param appRole string
@secure()
param appPassword string
@description('Port the app role connects to: 6432 through PgBouncer, 5432 directly.')
param appPort int
@secure()
param b2cConnectorPassword string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: insightsName
}

// Admin login, direct (5432): migrations and tenant provisioning (`flask tenancy upgrade`).
resource databaseUrl 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: Key Vault may refuse an expired secret, which would stop the app at its next start; rotation is manual and documented (docs/operations.md), not driven by expiry
  parent: vault
  name: 'database-url'
  properties: {
    contentType: 'application/x-postgresql-url'
    value: 'postgresql://${adminLogin}:${uriComponent(adminPassword)}@${postgresFqdn}:5432/${databaseName}?sslmode=verify-full&sslrootcert=system'
  }
}

// The app role, through PgBouncer where it runs: what requests connect with.
resource databaseAppUrl 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: Key Vault may refuse an expired secret, which would stop the app at its next start; rotation is manual and documented (docs/operations.md), not driven by expiry
  parent: vault
  name: 'database-app-url'
  properties: {
    contentType: 'application/x-postgresql-url'
    value: 'postgresql://${appRole}:${uriComponent(appPassword)}@${postgresFqdn}:${appPort}/${databaseName}?sslmode=verify-full&sslrootcert=system'
  }
}

// `flask tenancy upgrade` sets the app role's password to this on every run.
resource databaseAppPassword 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: Key Vault may refuse an expired secret, which would stop the app at its next start; rotation is manual and documented (docs/operations.md), not driven by expiry
  parent: vault
  name: 'database-app-password'
  properties: { contentType: 'text/plain', value: appPassword }
}

resource connectorPassword 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: Key Vault may refuse an expired secret, which would stop the app at its next start; rotation is manual and documented (docs/operations.md), not driven by expiry
  parent: vault
  name: 'b2c-connector-password'
  properties: { contentType: 'text/plain', value: b2cConnectorPassword }
}

resource insightsConnection 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: Key Vault may refuse an expired secret, which would stop the app at its next start; the value follows the Application Insights resource, re-written on every provisioning
  parent: vault
  name: 'applicationinsights-connection-string'
  properties: { contentType: 'text/plain', value: insights.properties.ConnectionString }
}

// Versionless URIs: App Service follows the latest version (docs/operations.md, rotation).
output uris object = {
  DATABASE_URL: databaseUrl.properties.secretUri
  DATABASE_APP_URL: databaseAppUrl.properties.secretUri
  DATABASE_APP_PASSWORD: databaseAppPassword.properties.secretUri
  B2C_CONNECTOR_PASSWORD: connectorPassword.properties.secretUri
  APPLICATIONINSIGHTS_CONNECTION_STRING: insightsConnection.properties.secretUri
}
