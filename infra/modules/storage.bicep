// Blob Storage: GPv2, LRS, no public blobs, keyless (Entra ID only). Practices' containers
// are created by the app on first write; the platform's billing files live in `billing`.

param name string
param suffix string
param location string
param tags object

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: exports are downloaded by the client's browser straight from Blob Storage through short-lived user-delegation SAS links, so the account must accept public network traffic; no anonymous access and no account keys
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: the browser fetches export downloads from the account's public endpoint (SAS links); anonymous blob access is off
  // checkov:skip=CKV_AZURE_206: LRS is the decision record's choice for the MVP (exports are re-creatable, billing files are rebuilt from the ledger); GRS would copy health data to the paired region
  // checkov:skip=CKV_AZURE_43: the name is `name` (3-7 lower-case letters, main.bicep) + 'st' + uniqueString() (13 lower-case letters and digits): at most 22 characters; checkov cannot evaluate the expression
  name: '${name}st${suffix}'
  location: location
  tags: tags
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: { blob: { enabled: true, keyType: 'Account' } }
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  // No soft delete: an erased client's export and an offboarded practice's container must
  // be gone when the API says so (GDPR Art. 17), not recoverable for days.
  properties: {
    deleteRetentionPolicy: { enabled: false }
    containerDeleteRetentionPolicy: { enabled: false }
  }
}

resource billing 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: 'billing'
  properties: { publicAccess: 'None' }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
