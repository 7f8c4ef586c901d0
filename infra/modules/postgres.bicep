// PostgreSQL Flexible Server: the database, the extensions the migrations use, and the
// built-in PgBouncer where the compute tier has it.

param name string
param suffix string
param location string
param tags object

param skuName string
@allowed([ 'Burstable', 'GeneralPurpose', 'MemoryOptimized' ])
param tier string
param adminLogin string
@secure()
param adminPassword string
param databaseName string

// Azure's built-in PgBouncer runs only on the General Purpose and Memory Optimized tiers,
// not on Burstable: there the app role connects directly (port 5432).
var pgBouncerEnabled = tier != 'Burstable'

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2023-12-01-preview' = {
  name: '${name}-pg-${suffix}'
  location: location
  tags: tags
  sku: { name: skuName, tier: tier }
  properties: {
    version: '16'
    administratorLogin: adminLogin
    administratorLoginPassword: adminPassword
    authConfig: { passwordAuth: 'Enabled', activeDirectoryAuth: 'Disabled' }
    storage: { storageSizeGB: 32, autoGrow: 'Enabled' }
    backup: { backupRetentionDays: 7, geoRedundantBackup: 'Disabled' }
    highAvailability: { mode: 'Disabled' }
    network: { publicNetworkAccess: 'Enabled' }
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2023-12-01-preview' = {
  parent: server
  name: databaseName
  properties: { charset: 'UTF8', collation: 'en_US.utf8' }
}

// Only extensions on this list can be created (migrations use gen_random_uuid and friends).
resource extensions 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2023-12-01-preview' = {
  parent: server
  name: 'azure.extensions'
  properties: { value: 'uuid-ossp,pgcrypto', source: 'user-override' }
}

// Server parameters are applied one at a time (parallel updates of one server conflict).
resource pgBouncer 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2023-12-01-preview' = if (pgBouncerEnabled) {
  parent: server
  name: 'pgbouncer.enabled'
  properties: { value: 'true', source: 'user-override' }
  dependsOn: [ extensions ]
}

resource pgBouncerMode 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2023-12-01-preview' = if (pgBouncerEnabled) {
  parent: server
  name: 'pgbouncer.pool_mode'
  properties: { value: 'TRANSACTION', source: 'user-override' }
  dependsOn: [ pgBouncer ]
}

// Server connections PgBouncer opens for the app role; the rest of max_connections stays
// for direct admin connections (migrations, provisioning: port 5432).
resource pgBouncerPool 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2023-12-01-preview' = if (pgBouncerEnabled) {
  parent: server
  name: 'pgbouncer.default_pool_size'
  properties: { value: '40', source: 'user-override' }
  dependsOn: [ pgBouncerMode ]
}

// Public access limited to Azure-hosted clients (App Service has no fixed outbound
// address on this plan); logins need a password over TLS. Private access: hardening step.
resource allowAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2023-12-01-preview' = {
  parent: server
  name: 'allow-azure-services'
  properties: { startIpAddress: '0.0.0.0', endIpAddress: '0.0.0.0' }
}

// No diagnostic setting for server logs: PostgreSQL's error details can quote row values
// (client data), which must not reach Log Analytics.

output fqdn string = server.properties.fullyQualifiedDomainName
output serverName string = server.name
output serverId string = server.id
output databaseName string = database.name
output pgBouncerEnabled bool = pgBouncerEnabled
// The app role's port: PgBouncer's where it runs, else the server's.
output appPort int = pgBouncerEnabled ? 6432 : 5432
// DATABASE_APP_POOLER: PgBouncer's pool mode, for the app (empty when it connects directly).
output appPooler string = pgBouncerEnabled ? 'transaction' : ''
