// ClinAI: every Azure service of the decision record (shared INFRASTRUCTURE_DECISION), in
// Azure Germany West Central. Entry point for `azd up` (azure.yaml) and for
// `az deployment group create -f infra/main.bicep`. What each module holds: infra/README.md.

targetScope = 'resourceGroup'

@description('Short name used in resource names: lower-case letters (Key Vault and Storage names allow 24 characters, with a 13-character suffix).')
@minLength(3)
@maxLength(7)
param name string = 'clinai'

@description('azd environment name (tag azd-env-name).')
param environmentName string = 'prod'

@description('Health data stays in Germany: the only region allowed.')
@allowed([ 'germanywestcentral' ])
param location string = 'germanywestcentral'

@description('Static Web Apps are not offered in Germany West Central; the frontend\'s static files hold no health data.')
param staticWebAppLocation string = 'westeurope'

// Identity (B2C / Entra External ID; the tenant and its user flows: docs/operations.md).
@description('OpenID metadata document of the B2C user flow (or Entra External ID tenant).')
param oidcMetadataUrl string
@description('Application (client) id of the API registration: the token audience.')
param apiAudience string
@description('Claim holding the practice id: B2C custom attribute tenant_id.')
param authTenantClaim string = 'extension_tenant_id'
@description('Claim holding the role: B2C custom attribute role.')
param authRoleClaim string = 'extension_role'
@description('HTTP Basic user name the B2C API connector sends.')
param b2cConnectorUsername string = 'b2c-connector'
@secure()
@description('HTTP Basic password the B2C API connector sends.')
param b2cConnectorPassword string

// Database.
param postgresAdminLogin string = 'clinaiadmin'
@secure()
param postgresAdminPassword string
@secure()
@description('Password of the app role (clinai_app); `flask tenancy upgrade` sets it.')
param databaseAppPassword string
@description('Decision record: Burstable B1ms. Azure\'s built-in PgBouncer needs GeneralPurpose or MemoryOptimized (e.g. Standard_D2ds_v5).')
param postgresSkuName string = 'Standard_B1ms'
@allowed([ 'Burstable', 'GeneralPurpose', 'MemoryOptimized' ])
param postgresTier string = 'Burstable'

// Compute and AI.
param appServiceSkuName string = 'B1'
@allowed([ 'Standard', 'DataZoneStandard' ])
@description('Standard keeps processing in Germany West Central where gpt-4o-mini has regional capacity; DataZoneStandard keeps it in the EU data zone.')
param openAiDeploymentType string = 'DataZoneStandard'
@description('gpt-4o-mini capacity, in thousands of tokens per minute.')
param openAiCapacity int = 30

// Operations.
@description('Where the alerts go.')
param alertEmail string
@description('Token subjects of the billing team, comma-separated (empty: nobody).')
param billingPrincipals string = ''
@description('Browser origins allowed to call the API besides the Static Web App (custom domains).')
param extraCorsOrigins array = []

var suffix = uniqueString(resourceGroup().id)
var tags = { 'azd-env-name': environmentName, workload: name }
var databaseName = 'clinai'
var appRole = 'clinai_app'

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: { name: name, suffix: suffix, location: location, tags: tags }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: name
    suffix: suffix
    location: location
    tags: tags
    workspaceId: monitoring.outputs.workspaceId
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  params: {
    name: name
    suffix: suffix
    location: location
    tags: tags
    skuName: postgresSkuName
    tier: postgresTier
    adminLogin: postgresAdminLogin
    adminPassword: postgresAdminPassword
    databaseName: databaseName
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: { name: name, suffix: suffix, location: location, tags: tags }
}

module openAi 'modules/openai.bicep' = {
  name: 'openai'
  params: {
    name: name
    suffix: suffix
    location: location
    tags: tags
    workspaceId: monitoring.outputs.workspaceId
    deploymentName: 'gpt-4o-mini'
    modelName: 'gpt-4o-mini'
    modelVersion: '2024-07-18'
    deploymentType: openAiDeploymentType
    capacity: openAiCapacity
  }
}

module secrets 'modules/secrets.bicep' = {
  name: 'secrets'
  params: {
    vaultName: vault.outputs.name
    insightsName: monitoring.outputs.insightsName
    postgresFqdn: postgres.outputs.fqdn
    databaseName: postgres.outputs.databaseName
    adminLogin: postgresAdminLogin
    adminPassword: postgresAdminPassword
    appRole: appRole
    appPassword: databaseAppPassword
    appPort: postgres.outputs.appPort
    b2cConnectorPassword: b2cConnectorPassword
  }
}

module frontend 'modules/staticwebapp.bicep' = {
  name: 'staticwebapp'
  params: { name: name, suffix: suffix, location: staticWebAppLocation, tags: tags }
}

module api 'modules/appservice.bicep' = {
  name: 'appservice'
  params: {
    name: name
    suffix: suffix
    location: location
    tags: tags
    workspaceId: monitoring.outputs.workspaceId
    skuName: appServiceSkuName
    keyVaultUri: vault.outputs.uri
    secretUris: secrets.outputs.uris
    oidcMetadataUrl: oidcMetadataUrl
    apiAudience: apiAudience
    authTenantClaim: authTenantClaim
    authRoleClaim: authRoleClaim
    b2cConnectorUsername: b2cConnectorUsername
    openAiEndpoint: openAi.outputs.endpoint
    openAiDeployment: openAi.outputs.deploymentName
    storageBlobEndpoint: storage.outputs.blobEndpoint
    appRole: appRole
    databaseAppPooler: postgres.outputs.appPooler
    billingPrincipals: billingPrincipals
    corsOrigins: concat([ 'https://${frontend.outputs.defaultHostname}' ], extraCorsOrigins)
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    principalId: api.outputs.principalId
    vaultName: vault.outputs.name
    storageName: storage.outputs.name
    openAiName: openAi.outputs.name
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    name: name
    location: location
    tags: tags
    workspaceId: monitoring.outputs.workspaceId
    appId: api.outputs.id
    openAiId: openAi.outputs.id
    alertEmail: alertEmail
  }
}

// azd writes these into the environment (.azure/<env>/.env); the deploy workflow reads them.
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = 'https://${api.outputs.defaultHostName}'
output AZURE_KEY_VAULT_NAME string = vault.outputs.name
output AZURE_KEY_VAULT_URL string = vault.outputs.uri
output POSTGRES_SERVER_NAME string = postgres.outputs.serverName
output POSTGRES_PGBOUNCER_ENABLED bool = postgres.outputs.pgBouncerEnabled
output STATIC_WEB_APP_NAME string = frontend.outputs.name
output STATIC_WEB_APP_URI string = 'https://${frontend.outputs.defaultHostname}'
