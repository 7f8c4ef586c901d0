// Azure OpenAI in Germany West Central with one chat deployment. Keyless: local (API key)
// auth is off and the web app's identity has Cognitive Services OpenAI User (roles.bicep).

param name string
param suffix string
param location string
param tags object
param workspaceId string

param deploymentName string
param modelName string
param modelVersion string
@description('Standard: processed in the resource\'s region (where the model has regional capacity); DataZoneStandard: processed within the EU data zone.')
@allowed([ 'Standard', 'DataZoneStandard' ])
param deploymentType string
@description('Capacity in thousands of tokens per minute.')
param capacity int

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  // checkov:skip=CKV_AZURE_134: the web app is not VNet-integrated, so it reaches Azure OpenAI over the public endpoint; only Entra ID tokens of identities with an OpenAI role are accepted (local auth disabled). Private endpoint: hardening step
  name: '${name}-oai-${suffix}'
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: { name: 'S0' }
  identity: { type: 'SystemAssigned' }
  properties: {
    customSubDomainName: '${name}-oai-${suffix}'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource chat 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: deploymentName
  sku: { name: deploymentType, capacity: capacity }
  properties: {
    model: { format: 'OpenAI', name: modelName, version: modelVersion }
    versionUpgradeOption: 'NoAutoUpgrade'
  }
}

// Metrics only (no request logs).
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'metrics-to-workspace'
  scope: account
  properties: {
    workspaceId: workspaceId
    metrics: [ { category: 'AllMetrics', enabled: true } ]
  }
}

output name string = account.name
output id string = account.id
output endpoint string = account.properties.endpoint
output deploymentName string = chat.name
