// Azure Database for PostgreSQL Flexible Server shared by both App Service slots (so schema
// migrations must be expand/contract). Private: public network access is disabled, there is
// no firewall rule at all, and clients reach it only through the private endpoint that
// main.bicep places in the VNet (modules/privateendpoint.bicep). A private endpoint rather
// than a delegated subnet: VNet injection is fixed when a server is created, so moving an
// existing server to it means a new server and a data migration; a private endpoint is added
// to the running server and keeps its host name (through the privatelink DNS zone).
// Sign-in is Entra ID (the web app's managed identity holds a database role); password
// authentication is a per-environment switch, off in production.

@description('Azure region.')
param location string

@description('Tags shared by every resource.')
param tags object

@description('Server name (globally unique).')
param serverName string

@description('PostgreSQL major version.')
param version string

@description('Compute SKU name.')
param skuName string

@description('Compute tier (zone-redundant HA needs GeneralPurpose or MemoryOptimized).')
param skuTier string

@description('Storage size in GiB.')
param storageGb int

@description('Backup retention in days.')
param backupRetentionDays int

@description('Geo-redundant backups.')
param geoRedundantBackup bool

@description('Zone-redundant high availability: a standby in another zone, automatic failover.')
param highAvailability bool

@description('Allow password sign-in (the administrator login) besides Entra ID.')
param passwordAuth bool

@description('Administrator login (only with password authentication).')
param adminLogin string

@description('Administrator password (only with password authentication).')
@secure()
param adminPassword string

@description('Object id of the Entra ID administrator (a group, user or service principal).')
param entraAdminObjectId string

@description('Display name of the Entra ID administrator.')
param entraAdminName string

@description('Principal type of the Entra ID administrator.')
@allowed([
  'Group'
  'User'
  'ServicePrincipal'
])
param entraAdminType string

@description('Extensions the server may create (azure.extensions allow-list).')
param extensions array

@description('Log Analytics workspace for the server logs and metrics.')
param logAnalyticsWorkspaceId string

@description('Put a CanNotDelete lock on the server (production data).')
param lock bool

var lockName = 'emrops-data-lock'

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2023-12-01-preview' = {
  #checkov:skip=CKV_AZURE_136:Geo-redundant backup is a parameter: on in production, off in staging to save cost
  name: serverName
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: version
    administratorLogin: passwordAuth ? adminLogin : null
    administratorLoginPassword: passwordAuth ? adminPassword : null
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: passwordAuth ? 'Enabled' : 'Disabled'
      tenantId: subscription().tenantId
    }
    storage: {
      storageSizeGB: storageGb
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: backupRetentionDays
      geoRedundantBackup: geoRedundantBackup ? 'Enabled' : 'Disabled'
    }
    availabilityZone: '1'
    highAvailability: {
      mode: highAvailability ? 'ZoneRedundant' : 'Disabled'
      standbyAvailabilityZone: highAvailability ? '2' : null
    }
    network: {
      publicNetworkAccess: 'Disabled'
    }
    // Planned maintenance (restarts, failover with HA) at a known quiet time rather than any
    // time Azure picks (Well-Architected reliability for PostgreSQL): Sunday 02:00 UTC
    maintenanceWindow: {
      customWindow: 'Enabled'
      dayOfWeek: 0
      startHour: 2
      startMinute: 0
    }
  }
}

resource entraAdmin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2023-12-01-preview' = {
  parent: server
  name: entraAdminObjectId
  properties: {
    principalName: entraAdminName
    principalType: entraAdminType
    tenantId: subscription().tenantId
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2023-12-01-preview' = {
  parent: server
  name: 'emrsim'
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

resource requireTls 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2023-12-01-preview' = {
  parent: server
  name: 'require_secure_transport'
  properties: {
    value: 'on'
    source: 'user-override'
  }
}

// TLS 1.2 at least, said explicitly rather than left to the service default (Azure security
// baseline for PostgreSQL: "enforce TLS 1.2 or later"); clients connect with verify-full.
resource tlsFloor 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2023-12-01-preview' = {
  parent: server
  name: 'ssl_min_protocol_version'
  properties: {
    value: 'TLSv1.2'
    source: 'user-override'
  }
  dependsOn: [
    requireTls
  ]
}

// Configuration changes restart parts of the server: one at a time.
resource allowExtensions 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2023-12-01-preview' = {
  parent: server
  name: 'azure.extensions'
  properties: {
    value: join(extensions, ',')
    source: 'user-override'
  }
  dependsOn: [
    tlsFloor
  ]
}

// Connection, disconnection and checkpoint logging (Azure security baseline for PostgreSQL):
// they reach the workspace through the diagnostic setting below. Still one at a time.
resource logConnections 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2023-12-01-preview' = {
  parent: server
  name: 'log_connections'
  properties: {
    value: 'on'
    source: 'user-override'
  }
  dependsOn: [
    allowExtensions
  ]
}

resource logDisconnections 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2023-12-01-preview' = {
  parent: server
  name: 'log_disconnections'
  properties: {
    value: 'on'
    source: 'user-override'
  }
  dependsOn: [
    logConnections
  ]
}

resource logCheckpoints 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2023-12-01-preview' = {
  parent: server
  name: 'log_checkpoints'
  properties: {
    value: 'on'
    source: 'user-override'
  }
  dependsOn: [
    logDisconnections
  ]
}

// Server logs (PostgreSQLLogs, sessions, query store when on) and metrics to the workspace.
resource serverDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'server-to-workspace'
  scope: server
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

// Production data: a CanNotDelete lock (lockDataResources) keeps the server and its databases from being deleted by
// a slip (portal, CLI, a resource group delete); updates still go through.
resource serverLock 'Microsoft.Authorization/locks@2020-05-01' = if (lock) {
  name: lockName
  scope: server
  properties: {
    level: 'CanNotDelete'
    notes: 'Production data (lockDataResources in environments/production.toml). To delete on purpose: verify a recent backup, then az lock delete --name ${lockName} --resource-group ${resourceGroup().name} --resource ${serverName} --resource-type Microsoft.DBforPostgreSQL/flexibleServers. The next provision apply puts the lock back while lockDataResources is true.'
  }
}

@description('Resource id of the server (for its private endpoint).')
output id string = server.id

@description('Server host name (no credentials).')
output fullyQualifiedDomainName string = server.properties.fullyQualifiedDomainName
