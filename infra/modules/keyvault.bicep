// Key Vault: RBAC authorization, soft delete and purge protection. The web app's identity
// reads it (Key Vault Secrets User, roles.bicep); nobody gets access policies.

param name string
param suffix string
param location string
param tags object
param workspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the web app is not VNet-integrated and App Service is not a Key Vault trusted service, so a deny-by-default firewall would block its Key Vault references; access is by Entra ID + RBAC only (private endpoint: docs/operations.md, hardening)
  // checkov:skip=CKV_AZURE_189: same reason: public network access stays on until the web app reaches the vault through VNet integration and a private endpoint
  name: '${name}-kv-${suffix}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

// Who read which secret when: the vault's audit log, kept in the workspace.
resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-workspace'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [ { categoryGroup: 'audit', enabled: true } ]
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
