// Azure Database for PostgreSQL Flexible Server shared by both App Service slots
// (so schema migrations must be expand/contract). The admin password is a secure
// parameter and never appears in an output.

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

@description('Compute tier.')
param skuTier string

@description('Storage size in GiB.')
param storageGb int

@description('Backup retention in days.')
param backupRetentionDays int

@description('Geo-redundant backups.')
param geoRedundantBackup bool

@description('Administrator login.')
param adminLogin string

@description('Administrator password.')
@secure()
param adminPassword string

@description('Client IP ranges allowed through the firewall: objects with name, start and end.')
param allowedIpRanges array

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
    administratorLogin: adminLogin
    administratorLoginPassword: adminPassword
    storage: {
      storageSizeGB: storageGb
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: backupRetentionDays
      geoRedundantBackup: geoRedundantBackup ? 'Enabled' : 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
    network: {
      publicNetworkAccess: 'Enabled'
    }
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

resource allowAzureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2023-12-01-preview' = {
  parent: server
  name: 'AllowAzureServices'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource clientRules 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2023-12-01-preview' = [for range in allowedIpRanges: {
  parent: server
  name: range.name
  properties: {
    startIpAddress: range.start
    endIpAddress: range.end
  }
}]

@description('Server host name (no credentials).')
output fullyQualifiedDomainName string = server.properties.fullyQualifiedDomainName
